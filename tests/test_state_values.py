"""What a state may hold, how it is copied, and the JSON form it travels in."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.translation import gettext_lazy

from caravela_flow import FlowError
from caravela_flow.state import StateError, check_state, copy_state, wire_state

UTC = dt.UTC
MOMENT = dt.datetime(2024, 5, 17, 13, 45, 30, 123456, tzinfo=UTC)
NAIVE = dt.datetime(2024, 5, 17, 13, 45, 30, 500000)
DAY = dt.date(2024, 2, 29)
CLOCK = dt.time(8, 30, 15, 250000)
SPAN = dt.timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)
PRICE = Decimal("19.990")
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def via_django_json(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def rich_state() -> dict[str, Any]:
    return {
        "moment": MOMENT,
        "naive": NAIVE,
        "day": DAY,
        "clock": CLOCK,
        "span": SPAN,
        "price": PRICE,
        "id": ID,
        "label": gettext_lazy("Books"),
        "pair": (1, "two"),
        "nested": {"when": [DAY, (MOMENT,)], "deep": {"n": None, "ok": True, "x": 1.5}},
        "empty": {},
        "none": None,
        "text": "ünïcode",
        "big": 2**64 - 1,  # the largest integer that travels (msgpack)
    }


# -- accepted values ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wired"),
    [
        (MOMENT, "2024-05-17T13:45:30.123Z"),
        (NAIVE, "2024-05-17T13:45:30.500"),
        (DAY, "2024-02-29"),
        (CLOCK, "08:30:15.250"),
        (SPAN, "P1DT02H03M04.005000S"),
        (PRICE, "19.990"),
        (ID, "12345678-1234-5678-1234-567812345678"),
        ((1, 2), [1, 2]),
        ([(1, 2), ()], [[1, 2], []]),
        (gettext_lazy("Books"), "Books"),
    ],
    ids=["datetime", "naive", "date", "time", "timedelta", "decimal", "uuid", "tuple", "tuples",
         "lazy"],
)  # fmt: skip
def test_values_are_wired_as_djangos_encoder_writes_them(value: Any, wired: Any) -> None:
    state = check_state({"v": value})
    assert state["v"] == value
    assert wire_state(state) == {"v": wired}
    assert wire_state(state) == via_django_json({"v": value})


def test_a_rich_state_wires_like_djangos_encoder() -> None:
    state = check_state(rich_state())
    wired = wire_state(state)
    assert wired == via_django_json(rich_state())
    # The wire form is JSON-native: it round-trips through plain json unchanged.
    assert json.loads(json.dumps(wired)) == wired
    assert wired["pair"] == [1, "two"]
    assert wired["nested"]["when"] == ["2024-02-29", ["2024-05-17T13:45:30.123Z"]]


def test_check_state_keeps_python_values() -> None:
    state = check_state(rich_state())
    assert state["moment"] is MOMENT  # immutable values are shared, not converted
    assert state["price"] == PRICE
    assert isinstance(state["price"], Decimal)
    assert isinstance(state["id"], uuid.UUID)
    assert state["pair"] == (1, "two")
    assert type(state["pair"]) is tuple
    assert type(copy_state(state)["pair"]) is tuple


def test_scalars_pass_unchanged() -> None:
    state = {"s": "x", "i": -3, "f": 0.25, "t": True, "n": None, "l": [1, [2]], "d": {"k": {}}}
    assert check_state(state) == state
    assert wire_state(check_state(state)) == state


def test_float_and_int_subclasses() -> None:
    class Meters(float):
        pass

    state = check_state({"m": Meters(2.5)})
    assert state == {"m": 2.5}
    assert wire_state(state) == {"m": 2.5}


# -- deep copies -----------------------------------------------------------------


def test_check_state_returns_a_deep_copy() -> None:
    source: dict[str, Any] = {"items": [1, {"a": [2]}], "meta": {"k": "v"}}
    checked = check_state(source)
    assert checked == source
    assert checked is not source
    checked["items"][1]["a"].append(3)
    checked["meta"]["k"] = "changed"
    checked["new"] = 1
    assert source == {"items": [1, {"a": [2]}], "meta": {"k": "v"}}


def test_copy_state_is_deep() -> None:
    source = check_state({"items": [[1], [2]], "meta": {"tags": ["a"]}})
    copy = copy_state(source)
    assert copy == source
    copy["items"][0].append(99)
    copy["meta"]["tags"].clear()
    del copy["items"][1]
    assert source == {"items": [[1], [2]], "meta": {"tags": ["a"]}}


def test_wire_state_does_not_touch_the_source() -> None:
    source = check_state({"pair": (1, 2), "when": DAY, "inner": {"l": [1]}})
    wired = wire_state(source)
    wired["inner"]["l"].append(2)
    assert source == {"pair": (1, 2), "when": DAY, "inner": {"l": [1]}}
    assert type(source["pair"]) is tuple


# -- refused values ----------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(bad: float) -> None:
    with pytest.raises(StateError, match=rf"state\['x'\]\[1\] is {bad!r}, which JSON cannot carry"):
        check_state({"x": [0, bad]})


def test_a_model_instance_is_refused_naming_the_key_path() -> None:
    with pytest.raises(StateError) as info:
        check_state({"data": {"users": [User(username="ann")]}}, "initial_state")
    message = str(info.value)
    assert message.startswith("initial_state['data']['users'][0] is a ")
    assert "django.contrib.auth.models.User" in message
    assert "store plain data" in message


def test_a_queryset_is_refused() -> None:
    with pytest.raises(StateError, match=r"state\['qs'\] is a django\.db\.models\.query\.QuerySet"):
        check_state({"qs": User.objects.none()})


@pytest.mark.parametrize(
    ("bad", "kind"),
    [
        ({1, 2}, "builtins.set"),
        (b"raw", "builtins.bytes"),
        (object(), "builtins.object"),
        (1 + 2j, "builtins.complex"),
        (frozenset(), "builtins.frozenset"),
        (print, "builtins.builtin_function_or_method"),
    ],
)
def test_other_values_are_refused(bad: Any, kind: str) -> None:
    with pytest.raises(StateError, match=rf"^state\['v'\] is a {kind} .*cannot travel as JSON"):
        check_state({"v": bad})


def test_non_string_keys_are_refused() -> None:
    with pytest.raises(StateError, match=r"^state has a non-string key 1; state keys must be str"):
        check_state({1: "a"})
    with pytest.raises(StateError, match=r"^state\['a'\]\[0\] has a non-string key None"):
        check_state({"a": [{None: 1}]})


@pytest.mark.parametrize("bad", [[], "x", None, 5, (("a", 1),)])
def test_a_state_must_be_a_dict(bad: Any) -> None:
    with pytest.raises(StateError, match=rf"^where must be a dict, got {type(bad).__name__}"):
        check_state(bad, "where")


def test_aware_times_are_refused_like_djangos_encoder_does() -> None:
    aware = dt.time(8, 30, tzinfo=UTC)
    with pytest.raises(ValueError):
        json.dumps(aware, cls=DjangoJSONEncoder)
    with pytest.raises(StateError, match=r"state\['t'\] is a timezone-aware time"):
        check_state({"t": aware})


def test_state_errors_are_flow_errors_and_type_errors() -> None:
    with pytest.raises(StateError) as info:
        check_state({"v": object()})
    assert isinstance(info.value, FlowError)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, ValueError)


def test_the_message_shortens_a_huge_value() -> None:
    class Huge:
        def __repr__(self) -> str:
            return "H" * 10_000

    with pytest.raises(StateError) as info:
        check_state({"v": Huge()})
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30, [1, {"n": 2**100}]])
def test_an_integer_outside_64_bits_is_refused_naming_where_it_is(value: object) -> None:
    # msgpack (channels-redis) carries nothing wider, so it could never reach a worker.
    with pytest.raises(StateError, match=r"state\['n'\].*outside 64 bits"):
        check_state({"n": value})


@pytest.mark.parametrize("value", [2**64 - 1, -(2**63), 0, True])
def test_integers_at_the_64_bit_bounds_travel(value: int) -> None:
    assert check_state({"n": value}) == {"n": value}
    assert wire_state({"n": value}) == {"n": value}
