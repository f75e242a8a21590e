"""Declaring flows: ``flow()``, ``Flows`` classes, the registry, autodiscovery, validation."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.apps import apps

from caravela_flow import (
    FlowDefinition,
    FlowDefinitionError,
    FlowError,
    FlowNotFound,
    Flows,
    debounce,
    each,
    flow,
    parallel,
    race,
    repeat,
    run,
    sequence,
    set_state,
    wait,
    wait_until,
)
from caravela_flow.registry import registry
from caravela_flow.steps import Sequence


def noop(state: dict) -> dict:
    return state


def is_ready(state: dict) -> bool:
    return bool(state.get("ready"))


class ModuleFlows(Flows):
    greet = flow(
        set_state(lambda s: {**s, "greeted": True}),
        initial_state={"greeted": False, "name": "world"},
    )
    tick = flow(wait(10), restart="temporary", max_restarts=1, max_seconds=2)


class Outer:
    class NestedFlows(Flows):
        inner = flow(wait(1))


# -- flow() and FlowDefinition ---------------------------------------------------


def test_flow_returns_a_definition_bound_to_its_attribute() -> None:
    definition = ModuleFlows.greet
    assert isinstance(definition, FlowDefinition)
    assert definition.name == "greet"
    assert definition.key == "tests.test_definitions.ModuleFlows.greet"
    assert definition.initial_state == {"greeted": False, "name": "world"}
    assert isinstance(definition.body, Sequence)
    assert len(definition.body.steps) == 1
    assert definition.body.steps[0].fn is not None  # type: ignore[attr-defined]
    assert "tests.test_definitions.ModuleFlows.greet" in repr(definition)


def test_body_is_a_sequence_of_the_given_steps() -> None:
    a, b, c = wait(1), set_state(noop), run(noop)
    definition = flow(a, b, c)
    assert definition.body == sequence(a, b, c)
    assert definition.body.steps == (a, b, c)


def test_unbound_definition_has_no_name_yet() -> None:
    definition = flow(wait(1))
    assert definition.name == ""
    assert definition.key == ""
    assert "unbound" in repr(definition)


def test_key_uses_the_class_qualname() -> None:
    assert Outer.NestedFlows.inner.key == "tests.test_definitions.Outer.NestedFlows.inner"
    assert Outer.NestedFlows.inner.name == "inner"

    class LocalFlows(Flows):
        here = flow(wait(1))

    assert LocalFlows.here.key == f"{__name__}.{LocalFlows.__qualname__}.here"
    assert "<locals>" in LocalFlows.here.key


def test_initial_state_defaults_to_empty_dict() -> None:
    assert flow(wait(1)).initial_state == {}
    assert flow(wait(1), initial_state=None).initial_state == {}


def test_initial_state_is_copied() -> None:
    declared: dict[str, Any] = {"items": [1, 2], "meta": {"a": 1}}
    definition = flow(wait(1), initial_state=declared)
    declared["items"].append(3)
    declared["meta"]["a"] = 2
    declared["new"] = True
    assert definition.initial_state == {"items": [1, 2], "meta": {"a": 1}}


def test_flow_options() -> None:
    tick = ModuleFlows.tick
    assert (tick.restart, tick.max_restarts, tick.max_seconds) == ("temporary", 1, 2.0)
    greet = ModuleFlows.greet
    assert (greet.restart, greet.max_restarts, greet.max_seconds) == ("transient", 3, 5.0)
    assert flow(wait(1), max_seconds=timedelta(milliseconds=1500)).max_seconds == 1.5
    assert flow(wait(1), max_restarts=0).max_restarts == 0


# -- Flows classes and the registry ------------------------------------------------


def test_flows_are_registered_under_their_key() -> None:
    assert registry.get("tests.test_definitions.ModuleFlows.greet") is ModuleFlows.greet
    assert registry.get("tests.test_definitions.ModuleFlows.tick") is ModuleFlows.tick
    assert "tests.test_definitions.Outer.NestedFlows.inner" in registry
    keys = registry.keys()
    assert keys == sorted(keys)
    assert "tests.test_definitions.ModuleFlows.greet" in keys


def test_registry_unknown_key() -> None:
    with pytest.raises(FlowNotFound, match=r"no flow is registered under 'nope\.Nope\.nope'"):
        registry.get("nope.Nope.nope")
    assert "nope.Nope.nope" not in registry


def test_get_flow_by_name() -> None:
    assert ModuleFlows.get_flow("greet") is ModuleFlows.greet
    assert set(ModuleFlows.__flows__) == {"greet", "tick"}


def test_get_flow_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(FlowNotFound) as info:
        ModuleFlows.get_flow("greeet")
    message = str(info.value)
    assert "ModuleFlows" in message
    assert "'greeet'" in message
    assert "greet" in message.split("its flows:")[1]
    assert "tick" in message.split("its flows:")[1]
    assert isinstance(info.value, FlowError)


def test_class_without_flows() -> None:
    class Empty(Flows):
        pass

    with pytest.raises(FlowNotFound, match="its flows: none"):
        Empty.get_flow("x")


def test_plain_attributes_are_not_flows() -> None:
    class Mixed(Flows):
        label = "not a flow"
        step = wait(1)
        real = flow(wait(1))

        def method(self) -> None:
            pass

    assert set(Mixed.__flows__) == {"real"}


def test_subclasses_inherit_and_override_flows() -> None:
    class Base(Flows):
        shared = flow(wait(1))
        replaced = flow(wait(2))

    class Child(Base):
        replaced = flow(wait(3))
        own = flow(wait(4))

    assert set(Child.__flows__) == {"shared", "replaced", "own"}
    assert Child.get_flow("shared") is Base.shared
    assert Child.get_flow("replaced") is Child.replaced
    assert Child.replaced.key.endswith("Child.replaced")
    assert Base.get_flow("replaced") is Base.replaced
    assert set(Base.__flows__) == {"shared", "replaced"}
    with pytest.raises(FlowNotFound):
        Base.get_flow("own")
    assert registry.get(Child.own.key) is Child.own
    # The base class itself holds no flows.
    assert Flows.__flows__ == {}


def test_one_definition_cannot_serve_two_attributes() -> None:
    shared = flow(wait(1))

    class First(Flows):
        a = shared

    with pytest.raises(FlowDefinitionError, match="declare a separate flow"):

        class Second(Flows):
            b = shared

    assert shared.key.endswith("First.a")
    assert First.get_flow("a") is shared

    with pytest.raises(FlowDefinitionError, match="declare a separate flow"):

        class Twice(Flows):
            x = y = flow(wait(1))

    # A class that failed to build registers nothing.
    registered = registry.keys()
    assert not [k for k in registered if ".Twice." in k or ".Second." in k]


def test_redefining_a_class_replaces_its_registration() -> None:
    def make() -> type[Flows]:
        class Again(Flows):
            f = flow(wait(1))

        return Again

    first, second = make(), make()
    assert first.f.key == second.f.key  # type: ignore[attr-defined]
    assert registry.get(second.f.key) is second.f  # type: ignore[attr-defined]


# -- autodiscovery ---------------------------------------------------------------


def test_app_ready_autodiscovers_flows_modules() -> None:
    config = apps.get_app_config("caravela_flow")
    with mock.patch("caravela_flow.apps.autodiscover_modules") as discover:
        config.ready()
    discover.assert_called_once_with("flows", register_to=registry)


DEMO_FLOWS = Path(__file__).resolve().parent.parent / "demo_site" / "library" / "flows.py"


@pytest.mark.skipif(not DEMO_FLOWS.exists(), reason="demo_site/library/flows.py is not written yet")
def test_installed_apps_flows_modules_are_registered_at_startup() -> None:
    import sys

    # Django imported it at setup (ready()), before any test imported it.
    assert "demo_site.library.flows" in sys.modules
    registered = registry.keys()
    keys = [k for k in registered if k.startswith("demo_site.library.flows.")]
    assert "demo_site.library.flows.BookSyncFlow.sync_book" in keys
    assert "demo_site.library.flows.BookImportFlow.import_books" in keys


def test_autodiscovery_registers_the_flows_of_a_newly_installed_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from django.conf import settings
    from django.test import override_settings

    package = tmp_path / "discovered_app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "flows.py").write_text(
        "from caravela_flow import Flows, flow, wait\n"
        "\n"
        "class FoundFlows(Flows):\n"
        "    found = flow(wait(1))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    key = "discovered_app.flows.FoundFlows.found"
    assert key not in registry
    try:
        with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, "discovered_app"]):
            assert "discovered_app.flows" in sys.modules
            assert key in registry
            assert registry.get(key).name == "found"
    finally:
        sys.modules.pop("discovered_app.flows", None)
        sys.modules.pop("discovered_app", None)


# -- durations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (0, 0),
        (500, 500),
        (1.5, 1.5),
        (timedelta(seconds=2), 2000),
        (timedelta(milliseconds=250), 250),
        (timedelta(microseconds=500), 0.5),
    ],
)
def test_durations_are_milliseconds_or_timedelta(value: Any, ms: float) -> None:
    assert wait(value).ms == ms
    assert debounce(value).ms == ms
    assert debounce(10, max_wait=value).max_wait == ms
    assert wait_until(noop, timeout=value).timeout == ms
    step = run(noop, base_delay=value, max_delay=value, timeout=value)
    assert (step.base_delay, step.max_delay, step.timeout) == (ms, ms, ms)
    assert parallel(noop, collect_as="r", timeout=value).timeout == ms
    assert race(noop, collect_as="r", timeout=value).timeout == ms


def test_optional_durations_default_to_none() -> None:
    assert wait_until(noop).timeout is None
    assert debounce(5).max_wait is None
    assert run(noop).timeout is None
    assert run(noop).max_delay is None
    assert parallel(noop, collect_as="r").timeout is None
    assert race(noop, collect_as="r").timeout is None


def test_backoff_delays() -> None:
    assert [run(noop, backoff="constant", base_delay=100).delay(k) for k in (1, 2, 3)] == [
        100,
        100,
        100,
    ]
    assert [run(noop, backoff="linear", base_delay=100).delay(k) for k in (1, 2, 3)] == [
        100,
        200,
        300,
    ]
    assert [run(noop, base_delay=100).delay(k) for k in (1, 2, 3, 4)] == [100, 200, 400, 800]
    capped = run(noop, base_delay=100, max_delay=250)
    assert [capped.delay(k) for k in (1, 2, 3, 4)] == [100, 200, 250, 250]


# -- definition errors ------------------------------------------------------------


def expect(match: str) -> Any:
    return pytest.raises(FlowDefinitionError, match=match)


BAD_DURATIONS = [
    pytest.param(-1, r"-1\b", id="negative"),
    pytest.param(-0.5, r"-0\.5", id="negative-float"),
    pytest.param(float("nan"), "nan", id="nan"),
    pytest.param(float("inf"), "inf", id="inf"),
    pytest.param(True, "True", id="bool"),
    pytest.param(False, "False", id="bool-false"),
    pytest.param("500", "'500'", id="str"),
    pytest.param(None, "None", id="none"),
    pytest.param(timedelta(seconds=-1), "-1000", id="negative-timedelta"),
]


@pytest.mark.parametrize(("value", "shown"), BAD_DURATIONS)
def test_bad_wait_ms(value: Any, shown: str) -> None:
    with expect(rf"^wait: ms must be .*{shown}"):
        wait(value)


@pytest.mark.parametrize(("value", "shown"), BAD_DURATIONS)
def test_bad_debounce_ms(value: Any, shown: str) -> None:
    with expect(rf"^debounce: ms must be .*{shown}"):
        debounce(value)


@pytest.mark.parametrize(
    ("value", "shown"), [p for p in BAD_DURATIONS if p.id != "none"]
)  # None means "no limit" for these
def test_bad_optional_durations_name_their_step(value: Any, shown: str) -> None:
    with expect(rf"^debounce\(10\): max_wait must be .*{shown}"):
        debounce(10, max_wait=value)
    with expect(rf"^wait_until\(is_ready\): timeout must be .*{shown}"):
        wait_until(is_ready, timeout=value)
    with expect(rf"^run\(noop\): timeout must be .*{shown}"):
        run(noop, timeout=value)
    with expect(rf"^run\(noop\): max_delay must be .*{shown}"):
        run(noop, max_delay=value)
    with expect(rf"^run\(noop\): base_delay must be .*{shown}"):
        run(noop, base_delay=value)
    with expect(rf"^parallel\(collect_as='r'\): timeout must be .*{shown}"):
        parallel(noop, collect_as="r", timeout=value)
    with expect(rf"^race\(collect_as='r'\): timeout must be .*{shown}"):
        race(noop, collect_as="r", timeout=value)


def test_bad_duration_message_says_milliseconds_or_timedelta() -> None:
    with expect("milliseconds .* or a timedelta"):
        wait("soon")
    with expect(">= 0"):
        wait(-5)


def test_unknown_backoff() -> None:
    with expect(r"run\(noop\): unknown backoff 'fibonacci'; use one of constant, linear, exp"):
        run(noop, backoff="fibonacci")
    with expect(r"unknown backoff None"):
        run(noop, backoff=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("retries", [-1, 1.5, True, "3", None])
def test_bad_retries(retries: Any) -> None:
    with expect(rf"^run\(noop\): retries must be an int >= 0, got {retries!r}"):
        run(noop, retries=retries)


def test_bad_jitter() -> None:
    with expect(r"run\(noop\): jitter must be True or False, got 1"):
        run(noop, jitter=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, 5, "noop", {"a": 1}])
def test_non_callables_where_functions_belong(bad: Any) -> None:
    shown = repr(bad)
    with expect(rf"^set_state: fn must be callable, got {shown}"):
        set_state(bad)
    with expect(rf"^run: fn must be callable, got {shown}"):
        run(bad)
    with expect(rf"^wait_until: predicate must be callable, got {shown}"):
        wait_until(bad)
    with expect(rf"^each\('items'\): fn must be callable, got {shown}"):
        each("items", bad)
    with expect(rf"^parallel: fn \(a function of the state, or a list of tasks\) .*{shown}"):
        parallel(bad, collect_as="r")
    with expect(rf"^race: fn \(a function of the state, or a list of tasks\) .*{shown}"):
        race(bad, collect_as="r")


def test_non_callable_task_in_a_list() -> None:
    with expect(r"^parallel: task 1 must be callable, got 42"):
        parallel([noop, 42], collect_as="r")
    with expect(r"^race: task 0 must be callable, got 'x'"):
        race(["x"], collect_as="r")


def test_empty_task_lists_are_allowed() -> None:
    assert parallel([], collect_as="r").fn == ()
    assert race([], collect_as="r").fn == ()


def test_each_without_a_key() -> None:
    with expect(r"^each: key must be a non-empty string, got None"):
        each(None, noop)  # type: ignore[arg-type]
    with expect(r"^each: key must be a non-empty string, got ''"):
        each("", noop)
    with expect(r"^each: key must be a non-empty string, got 3"):
        each(3, noop)  # type: ignore[arg-type]


def test_each_without_fn() -> None:
    with expect(r"^each\('items'\): fn must be callable, got None"):
        each("items", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'fn'"):
        each("items")  # type: ignore[call-arg]


@pytest.mark.parametrize("key", ["", None, 3])
def test_bad_collect_as(key: Any) -> None:
    with expect(rf"parallel\(collect_as={key!r}\): collect_as must be a non-empty string"):
        parallel(noop, collect_as=key)
    with expect(rf"race\(collect_as={key!r}\): collect_as must be a non-empty string"):
        race(noop, collect_as=key)


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "2"])
def test_bad_max_concurrency(limit: Any) -> None:
    with expect(
        rf"^parallel\(collect_as='r'\): max_concurrency must be an int >= 1 or None, got "
        rf"{limit!r}"
    ):
        parallel(noop, collect_as="r", max_concurrency=limit)


def test_good_max_concurrency() -> None:
    assert parallel(noop, collect_as="r", max_concurrency=1).max_concurrency == 1
    assert parallel(noop, collect_as="r", max_concurrency=None).max_concurrency is None


def test_unknown_flow_option() -> None:
    with expect(r"^flow: unknown option\(s\) retries, timeout; known: max_restarts"):
        flow(wait(1), retries=3, timeout=5)


@pytest.mark.parametrize("policy", ["permanent", None, "Transient"])
def test_bad_restart_policy(policy: Any) -> None:
    with expect(rf"^flow: unknown restart {policy!r}; use one of transient, temporary"):
        flow(wait(1), restart=policy)


@pytest.mark.parametrize("value", [-1, 1.0, True, "3"])
def test_bad_max_restarts(value: Any) -> None:
    with expect(rf"^flow: max_restarts must be an int >= 0, got {value!r}"):
        flow(wait(1), max_restarts=value)


@pytest.mark.parametrize(
    "value", [0, -1, float("nan"), timedelta(0), timedelta(seconds=-1), "5", True, None]
)
def test_bad_max_seconds(value: Any) -> None:
    with pytest.raises(FlowDefinitionError, match=r"^flow: max_seconds must be") as info:
        flow(wait(1), max_seconds=value)
    assert "seconds" in str(info.value)
    assert "milliseconds" not in str(info.value)


def test_flow_needs_steps() -> None:
    with expect(r"^flow: a flow needs at least one step"):
        flow()


@pytest.mark.parametrize("bad", [[1, 2], "state", 5, ({"a": 1},)])
def test_bad_initial_state_type(bad: Any) -> None:
    with expect(rf"^flow: initial_state must be a dict, got {type(bad).__name__}"):
        flow(wait(1), initial_state=bad)


def test_initial_state_value_that_cannot_travel() -> None:
    class Thing:
        pass

    with expect(r"^flow: initial_state\['thing'\] is a tests\.test_definitions\..*Thing"):
        flow(wait(1), initial_state={"thing": Thing()})
    with expect(r"^flow: initial_state\['outer'\]\['inner'\]\[1\] is a builtins\.set"):
        flow(wait(1), initial_state={"outer": {"inner": [1, {2}]}})
    with expect(r"^flow: initial_state\['x'\] is nan, which JSON cannot carry"):
        flow(wait(1), initial_state={"x": math.nan})
    with expect(r"builtins\.bytes"):
        flow(wait(1), initial_state={"b": b"raw"})


def test_initial_state_with_non_str_keys() -> None:
    with expect(r"^flow: initial_state has a non-string key 1; state keys must be str"):
        flow(wait(1), initial_state={1: "a"})
    with expect(r"^flow: initial_state\['nested'\] has a non-string key \(1, 2\)"):
        flow(wait(1), initial_state={"nested": {(1, 2): "a"}})


def test_sequence_items_must_be_steps() -> None:
    with expect(r"^sequence: item 1 is not a step .*got 'wait'"):
        sequence(wait(1), "wait")  # type: ignore[arg-type]
    with expect(r"^sequence: item 0 is not a step .*got <function noop"):
        flow(noop)  # type: ignore[arg-type]
    with expect(r"^sequence: item 0 is not a step .*got 500"):
        repeat(500)  # type: ignore[arg-type]
    with expect(r"^sequence: item 0 is not a step .*got \[Wait\(ms=1\)\]"):
        flow([wait(1)])  # type: ignore[arg-type]
    with expect(r"^sequence: steps must be a tuple of steps, got 'ab'"):
        Sequence("ab")  # type: ignore[arg-type]


def test_definition_errors_are_flow_errors_and_value_errors() -> None:
    with pytest.raises(ValueError):
        wait(-1)
    with pytest.raises(FlowError):
        flow(wait(1), bogus=True)


def test_nested_steps_build_a_tree() -> None:
    body = flow(
        repeat(
            wait_until(is_ready),
            debounce(500),
            sequence(set_state(noop), run(noop, retries=3, backoff="exponential")),
        )
    ).body
    loop = body.steps[0]
    assert loop.step.steps[0] == wait_until(is_ready)  # type: ignore[attr-defined]
    assert loop.step.steps[2].steps[1].retries == 3  # type: ignore[attr-defined]
