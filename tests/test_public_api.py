"""The public surface of caravela_flow: names, step structs, handles, errors, version."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

import caravela_flow
from caravela_flow import steps as S
from caravela_flow.handle import FlowHandle, flow_id_of, is_flow_id

# The documented public API, in the documented order, plus FlowDefinition (returned by flow()).
DESIGN_NAMES = [
    "Flows",
    "flow",
    "sequence",
    "repeat",
    "wait",
    "wait_until",
    "debounce",
    "set_state",
    "run",
    "parallel",
    "race",
    "each",
    "Ok",
    "Retry",
    "Error",
    "Skip",
    "FlowHandle",
    "start",
    "astart",
    "signal",
    "asignal",
    "get_state",
    "aget_state",
    "stop",
    "astop",
    "FlowError",
    "FlowNotFound",
    "FlowDefinitionError",
    "NoWorkerAvailable",
    "FlowArgumentError",
    "StateError",
    "FlowUnreachable",
    "FlowTimeout",
    "subscription_url",
]
# Beyond the design list: the definition type flow() returns, the mark that lets
# worker-mode messages call a function outside a flows module, and
# the other public error classes.
EXTRA_NAMES = [
    "FlowDefinition",
    "remote_callable",
    "MalformedFlowId",
    "RefusedCallable",
    "TokenRefused",
]


def noop(state: dict) -> dict:
    return state


# -- names ---------------------------------------------------------------------


def test_all_is_exactly_the_design_list() -> None:
    assert sorted(caravela_flow.__all__) == sorted([*DESIGN_NAMES, *EXTRA_NAMES])
    assert len(caravela_flow.__all__) == len(set(caravela_flow.__all__))


@pytest.mark.parametrize("name", [*DESIGN_NAMES, *EXTRA_NAMES])
def test_every_public_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from caravela_flow import {name}", namespace)
    assert namespace[name] is getattr(caravela_flow, name)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from caravela_flow import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(caravela_flow.__all__)


def test_runtime_calls_have_async_twins() -> None:
    import inspect

    for name in ("start", "signal", "get_state", "stop"):
        sync, twin = getattr(caravela_flow, name), getattr(caravela_flow, "a" + name)
        assert not inspect.iscoroutinefunction(sync), name
        assert inspect.iscoroutinefunction(twin), name
        assert list(inspect.signature(sync).parameters) == list(inspect.signature(twin).parameters)


def test_version_matches_pyproject() -> None:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert caravela_flow.__version__ == version


def test_package_is_typed() -> None:
    assert (Path(caravela_flow.__file__).parent / "py.typed").is_file()


# -- step structs ----------------------------------------------------------------


STEP_CLASSES = [
    S.Sequence,
    S.Repeat,
    S.Wait,
    S.WaitUntil,
    S.Debounce,
    S.SetState,
    S.Run,
    S.Parallel,
    S.Race,
    S.Each,
]


def sample_steps() -> list[S.Step]:
    return [
        caravela_flow.sequence(caravela_flow.wait(1)),
        caravela_flow.repeat(caravela_flow.wait(1)),
        caravela_flow.wait(5),
        caravela_flow.wait_until(noop),
        caravela_flow.debounce(500),
        caravela_flow.set_state(noop),
        caravela_flow.run(noop),
        caravela_flow.parallel(noop, collect_as="out"),
        caravela_flow.race(noop, collect_as="out"),
        caravela_flow.each("items", noop),
    ]


@pytest.mark.parametrize("cls", STEP_CLASSES, ids=lambda c: c.__name__)
def test_step_classes_are_frozen_dataclasses(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert issubclass(cls, S.Step)


@pytest.mark.parametrize("step", sample_steps(), ids=lambda s: type(s).__name__)
def test_steps_refuse_assignment(step: S.Step) -> None:
    field = dataclasses.fields(step)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(step, field, None)


def test_builders_return_the_step_structs() -> None:
    built = sample_steps()
    assert [type(s) for s in built] == STEP_CLASSES


def test_step_structs_are_values() -> None:
    assert caravela_flow.wait(5) == S.Wait(5)
    assert caravela_flow.run(noop, retries=2) == S.Run(noop, 2)
    assert hash(caravela_flow.debounce(10)) == hash(S.Debounce(10))
    assert caravela_flow.wait(5) != caravela_flow.wait(6)


def test_sequence_holds_a_tuple() -> None:
    a, b = caravela_flow.wait(1), caravela_flow.wait(2)
    seq = caravela_flow.sequence(a, b)
    assert seq == S.Sequence((a, b))
    assert type(seq.steps) is tuple
    assert seq.steps == (a, b)
    # A list given to the struct directly is stored as a tuple too.
    assert type(S.Sequence([a, b]).steps) is tuple  # type: ignore[arg-type]


def test_repeat_wraps_its_steps_in_a_sequence() -> None:
    a, b = caravela_flow.wait(1), caravela_flow.set_state(noop)
    assert caravela_flow.repeat(a, b) == S.Repeat(step=S.Sequence((a, b)))
    assert caravela_flow.repeat(a, b).step.steps == (a, b)  # type: ignore[attr-defined]


def test_flow_body_is_a_sequence_of_the_steps() -> None:
    a, b = caravela_flow.wait(1), caravela_flow.wait(2)
    definition = caravela_flow.flow(a, b)
    assert isinstance(definition, caravela_flow.FlowDefinition)
    assert definition.body == S.Sequence((a, b))
    assert type(definition.body.steps) is tuple


def test_list_tasks_are_stored_as_tuples() -> None:
    def t1() -> int:
        return 1

    def t2() -> int:
        return 2

    par = caravela_flow.parallel([t1, t2], collect_as="out")
    race = caravela_flow.race([t1, t2], collect_as="out")
    assert par.fn == (t1, t2)
    assert race.fn == (t1, t2)
    assert type(par.fn) is tuple
    assert type(race.fn) is tuple


def test_step_fields_and_defaults() -> None:
    step = caravela_flow.run(noop)
    assert (step.fn, step.retries, step.backoff, step.base_delay) == (noop, 0, "exponential", 100)
    assert (step.max_delay, step.jitter, step.timeout) == (None, False, None)
    wu = caravela_flow.wait_until(noop, timeout=timedelta(seconds=2))
    assert (wu.predicate, wu.timeout) == (noop, 2000)
    db = caravela_flow.debounce(500, max_wait=2000)
    assert (db.ms, db.max_wait) == (500, 2000)
    par = caravela_flow.parallel(noop, collect_as="out", max_concurrency=2, timeout=100)
    assert (par.fn, par.collect_as, par.max_concurrency, par.timeout) == (noop, "out", 2, 100)
    each = caravela_flow.each("items", noop)
    assert (each.key, each.fn) == ("items", noop)


def test_result_values_are_frozen() -> None:
    for value in (
        caravela_flow.Ok({}),
        caravela_flow.Retry({}),
        caravela_flow.Error("x"),
        caravela_flow.Skip("y"),
    ):
        assert dataclasses.is_dataclass(value)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, dataclasses.fields(value)[0].name, 1)
    assert caravela_flow.Skip().reason is None
    assert caravela_flow.Ok({"a": 1}).state == {"a": 1}
    assert caravela_flow.Error("boom").reason == "boom"


# -- handles ---------------------------------------------------------------------


def test_flow_handle_str_is_its_id() -> None:
    flow_id = uuid.uuid4().hex
    handle = FlowHandle(flow_id, "mod.Cls.attr")
    assert str(handle) == flow_id == handle.id
    assert f"{handle}" == flow_id
    assert handle.flow == "mod.Cls.attr"
    with pytest.raises(dataclasses.FrozenInstanceError):
        handle.id = "x"  # type: ignore[misc]


def test_flow_handle_from_start_has_a_uuid4_hex_id() -> None:
    from caravela_flow import Flows, flow, set_state, start

    class HandleFlows(Flows):
        quick = flow(set_state(lambda s: {**s, "done": True}))

    handles = [start(HandleFlows, "quick") for _ in range(3)]
    ids = [h.id for h in handles]
    assert len(set(ids)) == 3
    for handle in handles:
        assert re.fullmatch(r"[0-9a-f]{32}", handle.id)
        assert uuid.UUID(hex=handle.id).version == 4
        assert str(handle) == handle.id
        assert handle.flow == HandleFlows.quick.key


def test_flow_id_of_accepts_handles_and_strings_only() -> None:
    handle = FlowHandle("a" * 32)
    assert flow_id_of(handle) == "a" * 32
    assert flow_id_of("b" * 32) == "b" * 32
    for bad in (None, 42, uuid.uuid4(), b"abc"):
        with pytest.raises(TypeError, match="FlowHandle or a flow id string"):
            flow_id_of(bad)
    assert is_flow_id(uuid.uuid4().hex)
    assert not is_flow_id("A" * 32)
    assert not is_flow_id("a" * 31)


# -- errors ----------------------------------------------------------------------


def test_error_hierarchy() -> None:
    assert issubclass(caravela_flow.FlowError, Exception)
    for name in ("FlowNotFound", "FlowDefinitionError", "NoWorkerAvailable"):
        cls = getattr(caravela_flow, name)
        assert issubclass(cls, caravela_flow.FlowError), name
        assert cls is not caravela_flow.FlowError
    # Friendly with ordinary except clauses too.
    assert issubclass(caravela_flow.FlowNotFound, LookupError)
    assert issubclass(caravela_flow.FlowDefinitionError, ValueError)


def _public_exceptions() -> list[type[BaseException]]:
    import importlib
    import pkgutil

    found = []
    for info in pkgutil.iter_modules(caravela_flow.__path__):
        try:
            module = importlib.import_module(f"caravela_flow.{info.name}")
        except ImportError:
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("caravela_flow")
                and not value.__name__.startswith("_")
                and value.__module__ != "caravela_flow.runner"  # internal control flow
            ):
                found.append(value)
    return found


def test_every_exception_caravela_flow_defines_is_a_flow_error() -> None:
    found = _public_exceptions()
    assert caravela_flow.FlowNotFound in found
    for cls in found:
        assert issubclass(cls, caravela_flow.FlowError), cls


def test_every_public_exception_is_importable_from_caravela_flow() -> None:
    for cls in _public_exceptions():
        assert getattr(caravela_flow, cls.__name__, None) is cls, cls
        assert cls.__name__ in caravela_flow.__all__, cls
