"""Supervision: what a crash is, restarts, the restart budget, retention, the lifecycle."""

from __future__ import annotations

import asyncio

import pytest
from django.test import override_settings

from caravela_flow import (
    Error,
    FlowNotFound,
    Flows,
    Ok,
    aget_state,
    asignal,
    astop,
    each,
    flow,
    get_state,
    parallel,
    race,
    run,
    set_state,
    signal,
    stop,
    wait,
    wait_until,
)
from caravela_flow.runner import FlowRunner, Status
from caravela_flow.supervisor import supervisor
from tests.flows_support import TICK, astart_clocked, now

pytestmark = pytest.mark.looptime


def progress(state: dict) -> dict:
    return {**state, "progress": state.get("progress", 0) + 1}


def after(state: dict) -> dict:
    return {**state, "after": True}


class Crasher:
    """Step functions that crash on their first ``times`` calls, then behave."""

    def __init__(self, times: int = 1) -> None:
        self.times = times
        self.calls = 0

    def _crashing(self) -> bool:
        self.calls += 1
        return self.calls <= self.times

    def set_state_raises(self, state: dict) -> dict:
        if self._crashing():
            raise ValueError("bad edit")
        return state

    def set_state_returns_none(self, state: dict) -> dict | None:
        return None if self._crashing() else state

    def predicate_raises(self, state: dict) -> bool:
        if self._crashing():
            return state["missing"]
        return True

    def builder_raises(self, state: dict) -> list:
        if self._crashing():
            raise RuntimeError("no ids")
        return [lambda: "ok"]

    def builder_returns_junk(self, state: dict) -> object:
        return 5 if self._crashing() else [lambda: "ok"]


def crash_step(source: str, crasher: Crasher):
    return {
        "set_state raises": lambda: set_state(crasher.set_state_raises),
        "set_state returns None": lambda: set_state(crasher.set_state_returns_none),
        "predicate raises": lambda: wait_until(crasher.predicate_raises),
        "parallel builder raises": lambda: parallel(crasher.builder_raises, collect_as="r"),
        "race builder raises": lambda: race(crasher.builder_raises, collect_as="r"),
        "parallel builder returns junk": lambda: parallel(
            crasher.builder_returns_junk, collect_as="r"
        ),
    }[source]()


CRASH_REASONS = {
    "set_state raises": "ValueError: bad edit",
    "set_state returns None": "returned None, not a dict",
    "predicate raises": "KeyError: 'missing'",
    "parallel builder raises": "RuntimeError: no ids",
    "race builder raises": "RuntimeError: no ids",
    "parallel builder returns junk": "returned 5, not a list of callables",
}


def crashing_flows(source: str, crasher: Crasher, **options: object) -> type[Flows]:
    class Crashing(Flows):
        f = flow(
            set_state(progress),
            crash_step(source, crasher),
            set_state(after),
            initial_state={"declared": True},
            **options,
        )

    return Crashing


# -- crashes and restarts ---------------------------------------------------


@pytest.mark.parametrize("source", list(CRASH_REASONS))
async def test_a_crash_restarts_the_flow_from_its_start_state_under_the_same_id(source):
    crasher = Crasher(times=1)
    probe = await astart_clocked(crashing_flows(source, crasher), "f", {"book_id": 7})
    end = await probe.await_end()
    start_state = {"declared": True, "book_id": 7}
    assert end["type"] == "flow.done"
    assert crasher.calls == 2
    # progress, restart, progress again, (the builder's results), after, done
    assert probe.kinds == ["flow.state"] * (len(probe.messages) - 1) + ["flow.done"]
    states = probe.states
    assert states[0] == {**start_state, "progress": 1}
    # The restart is announced with the state the flow was started with.
    assert states[1] == start_state
    assert states[2] == {**start_state, "progress": 1}  # not 2: it started over
    assert states[-1]["after"] is True
    assert {m["flow_id"] for m in probe.messages} == {probe.handle.id}
    assert [m["version"] for m in probe.messages] == list(range(1, len(probe.messages) + 1))


@pytest.mark.parametrize("source", list(CRASH_REASONS))
async def test_a_crash_of_a_temporary_flow_ends_it_with_the_reason(source):
    crasher = Crasher(times=1)
    probe = await astart_clocked(crashing_flows(source, crasher, restart="temporary"), "f")
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert CRASH_REASONS[source] in end["reason"]
    assert crasher.calls == 1
    assert probe.kinds == ["flow.state", "flow.error"]


async def test_a_set_state_returning_a_non_dict_names_the_step_and_the_value():
    def bad(state: dict) -> object:
        return ["not", "a", "dict"]

    class F(Flows):
        f = flow(set_state(bad), restart="temporary")

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert (
        end["reason"] == f"set_state({bad.__qualname__}) returned ['not', 'a', 'dict'], not a dict"
    )


async def test_a_signal_function_crash_restarts_the_flow():
    def explode(state: dict) -> dict:
        raise ValueError("bad signal")

    class F(Flows):
        f = flow(wait_until(lambda s: s.get("done")), initial_state={"v": 0})

    probe = await astart_clocked(F, "f", {"v": 1})
    await asignal(probe.handle, {"v": 2})
    await asignal(probe.handle, explode)
    # A signal that comes in while the crash is being handled goes with it.
    await asignal(probe.handle, {"late": True})
    await probe.await_state({"v": 1})
    assert await aget_state(probe.handle) == {"v": 1}
    assert probe.states == [{"v": 2}, {"v": 1}]
    # Same id, running again: it takes signals and ends normally.
    await asignal(probe.handle.id, {"done": True})
    end = await probe.await_end()
    assert end == {
        "type": "flow.done",
        "flow_id": probe.handle.id,
        "version": 4,
        "state": {"v": 1, "done": True},
    }


async def test_signals_queued_at_a_crash_are_dropped():
    release = asyncio.Event()
    entered = asyncio.Event()
    dropped_calls: list[dict] = []
    runs = 0

    async def work(state: dict) -> Ok:
        nonlocal runs
        runs += 1
        if runs == 1:
            entered.set()
            await release.wait()
        return Ok({**state, "worked": runs})

    def explode(state: dict) -> dict:
        raise ValueError("bad signal")

    def never(state: dict) -> dict:
        dropped_calls.append(state)
        return {**state, "never": True}

    class F(Flows):
        f = flow(run(work), wait_until(lambda s: s.get("done")), initial_state={"v": 0})

    probe = await astart_clocked(F, "f")
    await entered.wait()
    await asignal(probe.handle, {"v": 1})
    await asignal(probe.handle, explode)
    await asignal(probe.handle, never)
    await asignal(probe.handle, {"v": 3})
    release.set()
    # The run's Ok lands, then {"v": 1}, then the crash: restart, run again.
    state = await probe.await_state({"worked": 2})
    assert state == {"v": 0, "worked": 2}
    assert probe.states == [
        {"v": 0, "worked": 1},
        {"v": 1, "worked": 1},
        {"v": 0},  # the restart
        {"v": 0, "worked": 2},
    ]
    assert dropped_calls == []
    await asignal(probe.handle, {"done": True})
    assert (await probe.await_end())["state"] == {"v": 0, "worked": 2, "done": True}


@pytest.mark.parametrize("order", ["crash then stop", "stop then crash"])
async def test_a_stop_that_comes_with_a_crashing_signal_stops_the_flow(order):
    def explode(state: dict) -> dict:
        raise ValueError("bad signal")

    waiting = asyncio.Event()

    def done(state: dict) -> bool:
        waiting.set()
        return bool(state.get("done"))

    class F(Flows):
        f = flow(wait_until(done), initial_state={"v": 0})

    probe = await astart_clocked(F, "f")
    await waiting.wait()
    await asignal(probe.handle, {"v": 1})
    # Both land before the runner wakes up: the stop must not be lost to the restart.
    if order == "crash then stop":
        await asignal(probe.handle, explode)
        await astop(probe.handle)
    else:
        stop(probe.handle)  # on the flow's own loop: cancels and returns at once
        await asignal(probe.handle, explode)
    end = await probe.await_end()
    assert end["type"] == "flow.stopped"
    await asyncio.sleep(10)
    assert probe.kinds[-1] == "flow.stopped"
    assert supervisor.get(probe.handle.id).status is Status.STOPPED


async def test_a_flow_stopped_before_its_first_step_ends_stopped():
    ran = False

    def first(state: dict) -> dict:
        nonlocal ran
        ran = True
        return {**state, "ran": True}

    class F(Flows):
        f = flow(set_state(first))

    probe = await astart_clocked(F, "f", {"a": 1})
    await astop(probe.handle)  # the runner's task has not run yet
    assert probe.messages == [
        {"type": "flow.stopped", "flow_id": probe.handle.id, "version": 1, "state": {"a": 1}}
    ]
    await asyncio.sleep(1)
    assert not ran
    assert await aget_state(probe.handle) == {"a": 1}


# -- the restart budget -----------------------------------------------------


async def test_the_fourth_crash_inside_the_window_fails_the_flow():
    calls = 0

    def always(state: dict) -> dict:
        nonlocal calls
        calls += 1
        raise ValueError(f"crash {calls}")

    class F(Flows):
        f = flow(set_state(always), initial_state={"a": 1})

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert calls == 4
    assert probe.kinds == ["flow.state"] * 3 + ["flow.error"]
    assert probe.states == [{"a": 1}] * 3
    assert end["reason"].startswith("restart limit reached (3 restarts in 5 s)")
    assert end["reason"].endswith("ValueError: crash 4")
    assert f"set_state({always.__qualname__})" in end["reason"]


async def test_three_crashes_are_within_the_default_budget():
    crasher = Crasher(times=3)
    probe = await astart_clocked(crashing_flows("set_state raises", crasher), "f")
    end = await probe.await_end()
    assert end["type"] == "flow.done"
    assert crasher.calls == 4


async def test_a_custom_budget():
    crasher = Crasher(times=2)
    probe = await astart_clocked(
        crashing_flows("set_state raises", crasher, max_restarts=1, max_seconds=10), "f"
    )
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert end["reason"].startswith("restart limit reached (1 restarts in 10 s)")
    assert crasher.calls == 2


def crash_every(ms: float) -> tuple[type[Flows], list[float]]:
    times: list[float] = []

    def crash(state: dict) -> dict:
        times.append(now())
        raise ValueError("periodic")

    class Periodic(Flows):
        f = flow(wait(ms), set_state(crash))

    return Periodic, times


async def test_crashes_one_second_apart_use_up_the_budget():
    start = now()
    flows, times = crash_every(1000)
    probe = await astart_clocked(flows, "f")
    end = await probe.await_end(timeout=60)
    assert end["type"] == "flow.error"
    assert end["reason"].endswith("ValueError: periodic")
    assert len(times) == 4
    assert probe.end_time() - start == pytest.approx(4.0, abs=TICK)


async def test_crashes_spread_beyond_the_window_keep_restarting():
    # 1.7 s apart: no 5 s window ever holds more than 3 of them.
    flows, times = crash_every(1700)
    probe = await astart_clocked(flows, "f")
    await probe.await_state(lambda s: len(times) >= 10, timeout=60)
    assert probe.final is None
    assert probe.kinds == ["flow.state"] * 10
    await astop(probe.handle)
    assert probe.final["type"] == "flow.stopped"


async def test_the_budget_is_per_flow():
    # Two flows each crash three times at once: six crashes in the window,
    # but three per flow, so both carry on.
    crashers = {"a": Crasher(times=3), "b": Crasher(times=3)}

    def crash(state: dict) -> dict:
        return crashers[state["name"]].set_state_raises(state)

    class F(Flows):
        f = flow(set_state(crash), set_state(after))

    probes = [await astart_clocked(F, "f", {"name": name}) for name in crashers]
    ends = [await probe.await_end() for probe in probes]
    assert [end["type"] for end in ends] == ["flow.done", "flow.done"]
    assert [c.calls for c in crashers.values()] == [4, 4]


# -- failures that are not crashes ------------------------------------------


def not_crash_flows(calls: list[str]) -> type[Flows]:
    async def fails(state: dict) -> Error:
        calls.append("run")
        return Error("nope")

    async def slow(state: dict) -> None:
        calls.append("slow")
        await asyncio.sleep(10)

    async def bad_item(item: int, state: dict) -> Error:
        calls.append("each")
        return Error("bad item")

    async def bad_task() -> None:
        calls.append("task")
        raise ValueError("task failed")

    async def odd(state: dict) -> int:
        calls.append("odd")
        return 42

    class NotCrashes(Flows):
        run_error = flow(set_state(progress), run(fails))
        run_timeout = flow(set_state(progress), run(slow, timeout=100))
        run_unexpected = flow(set_state(progress), run(odd))
        each_error = flow(
            set_state(progress), each("items", bad_item), initial_state={"items": [1]}
        )
        wait_until_timeout = flow(set_state(progress), wait_until(lambda s: False, timeout=100))
        parallel_failure = flow(set_state(progress), parallel([bad_task], collect_as="r"))
        race_failure = flow(set_state(progress), race([bad_task], collect_as="r"))

    return NotCrashes


@pytest.mark.parametrize(
    "name",
    [
        "run_error",
        "run_timeout",
        "run_unexpected",
        "each_error",
        "wait_until_timeout",
        "parallel_failure",
        "race_failure",
    ],
)
async def test_step_failures_end_the_flow_without_a_restart(name):
    calls: list[str] = []
    probe = await astart_clocked(not_crash_flows(calls), name)
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert probe.kinds == ["flow.state", "flow.error"]
    assert len(calls) <= 1  # the work ran once, if there was any
    await asyncio.sleep(10)
    assert probe.kinds == ["flow.state", "flow.error"]


# -- retention ---------------------------------------------------------------


class Ends(Flows):
    done = flow(set_state(lambda s: {**s, "end": "done"}))
    error = flow(set_state(lambda s: {**s, "end": "error"}), run(lambda s: Error("no")))
    waits = flow(set_state(lambda s: {**s, "end": "stopped"}), wait_until(lambda s: False))


@pytest.mark.parametrize("name", ["done", "error", "waits"])
async def test_a_finished_flow_is_retained_for_retain_seconds(name):
    with override_settings(CARAVELA_FLOW={"RETAIN_SECONDS": 30}):
        probe = await astart_clocked(Ends, name, {"id": 1})
        if name == "waits":
            await probe.await_state({"end": "stopped"})
            await astop(probe.handle)
        await probe.await_end(timeout=10)
        ended = now()
        final = {"id": 1, "end": "stopped" if name == "waits" else name}

        await asyncio.sleep(29.9 - (now() - ended))
        assert await aget_state(probe.handle) == final
        assert get_state(probe.handle.id) == final
        status = supervisor.get(probe.handle.id).status
        assert status.public == {"done": "done", "error": "failed", "waits": "stopped"}[name]

        await asyncio.sleep(0.2)
        with pytest.raises(FlowNotFound):
            await aget_state(probe.handle)
        with pytest.raises(FlowNotFound):
            get_state(probe.handle)


async def test_default_retention_is_five_minutes():
    probe = await astart_clocked(Ends, "done")
    await probe.await_end()
    ended = now()
    await asyncio.sleep(299.9 - (now() - ended))
    assert (await aget_state(probe.handle))["end"] == "done"
    await asyncio.sleep(0.2)
    with pytest.raises(FlowNotFound):
        await aget_state(probe.handle)


async def test_signal_and_stop_on_a_finished_flow_raise_flow_not_found():
    probe = await astart_clocked(Ends, "done")
    await probe.await_end()
    with pytest.raises(FlowNotFound):
        await asignal(probe.handle, {"a": 1})
    with pytest.raises(FlowNotFound):
        signal(probe.handle, {"a": 1})
    with pytest.raises(FlowNotFound):
        await astop(probe.handle)
    with pytest.raises(FlowNotFound):
        stop(probe.handle.id)
    # Still readable, unchanged, and nothing more was sent.
    assert await aget_state(probe.handle) == {"end": "done"}
    assert probe.kinds == ["flow.state", "flow.done"]


async def test_unknown_ids_raise_flow_not_found():
    unknown = "0" * 32
    with pytest.raises(FlowNotFound):
        await aget_state(unknown)
    with pytest.raises(FlowNotFound):
        await asignal(unknown, {"a": 1})
    with pytest.raises(FlowNotFound):
        await astop(unknown)


# -- the lifecycle -----------------------------------------------------------


async def test_the_lifecycle_rejects_illegal_transitions():
    runner = FlowRunner(
        "f" * 32, Ends.done, {}, asyncio.get_running_loop(), lambda runner, message, final: None
    )
    assert runner.status is Status.STARTING
    assert runner.status.public == "running"
    with pytest.raises(RuntimeError, match="cannot go from starting to done"):
        runner.set_status(Status.DONE)
    with pytest.raises(RuntimeError, match="cannot go from starting to starting"):
        runner.set_status(Status.STARTING)
    runner.set_status(Status.RUNNING)
    with pytest.raises(RuntimeError, match="cannot go from running to starting"):
        runner.set_status(Status.STARTING)
    with pytest.raises(RuntimeError, match="cannot go from running to running"):
        runner.set_status(Status.RUNNING)
    runner.set_status(Status.DONE)
    assert runner.status.finished
    for status in Status:
        with pytest.raises(RuntimeError, match="cannot go from done"):
            runner.set_status(status)
    assert runner.status is Status.DONE


@pytest.mark.parametrize("first", [Status.FAILED, Status.STOPPED])
async def test_a_starting_runner_may_fail_or_stop_and_then_nothing_else(first):
    runner = FlowRunner(
        "e" * 32, Ends.done, {}, asyncio.get_running_loop(), lambda runner, message, final: None
    )
    runner.set_status(first)
    for status in Status:
        with pytest.raises(RuntimeError):
            runner.set_status(status)
    assert runner.status is first


async def test_a_finished_runner_refuses_signals():
    probe = await astart_clocked(Ends, "done")
    await probe.await_end()
    runner = supervisor.get(probe.handle.id)
    with pytest.raises(RuntimeError, match="is done"):
        runner.signal({"a": 1})
