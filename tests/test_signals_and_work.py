"""Signals and work in flight: reads never block, signals queue behind busy steps, stop cancels.

Step functions block on asyncio Events the test sets, so what is in flight
is exactly what the test says, with no sleeps.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from caravela_flow import (
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
    repeat,
    run,
    set_state,
    signal,
    wait_until,
)
from caravela_flow.errors import FlowArgumentError
from caravela_flow.supervisor import supervisor
from tests.flows_support import astart_clocked

pytestmark = pytest.mark.looptime


class Gate:
    """Lets a step function report that it started, and hold until released."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False
        self.cleaned_up = False

    async def hold(self) -> None:
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.cleaned_up = True


def append(item: str):
    def update(state: dict) -> dict:
        return {**state, "log": [*state["log"], item]}

    return update


def log_arg(state: dict, item: str, suffix: str = "") -> dict:
    return {**state, "log": [*state["log"], item + suffix]}


# Flows whose busy step holds on a Gate, then sets "result".


def busy_flows(gate: Gate) -> type[Flows]:
    async def work(state: dict) -> Ok:
        await gate.hold()
        return Ok({**state, "result": f"saw {len(state['log'])}"})

    async def task() -> str:
        await gate.hold()
        return "task"

    async def item(value: int, state: dict) -> Ok:
        await gate.hold()
        return Ok({**state, "result": f"item {value}"})

    class Busy(Flows):
        run_step = flow(run(work), initial_state={"log": []})
        parallel_step = flow(
            parallel(lambda s: [task], collect_as="result"), initial_state={"log": []}
        )
        race_step = flow(race(lambda s: [task], collect_as="result"), initial_state={"log": []})
        each_step = flow(each("items", item), initial_state={"log": [], "items": [1]})

    return Busy


EXPECTED_RESULT = {
    "run_step": "saw 0",
    "parallel_step": ["task"],
    "race_step": "task",
    "each_step": "item 1",
}


@pytest.mark.parametrize("name", list(EXPECTED_RESULT))
async def test_while_work_is_in_flight_reads_answer_at_once_and_signals_queue(name):
    gate = Gate()
    probe = await astart_clocked(busy_flows(gate), name)
    await gate.entered.wait()
    before = await aget_state(probe.handle)

    # Reads answer at once with the state from before the step, on this
    # thread and from another one.
    assert get_state(probe.handle) == before
    other: list[dict] = []
    reader = threading.Thread(target=lambda: other.append(get_state(probe.handle.id)))
    reader.start()
    reader.join(5)
    assert other == [before]

    # Signals are accepted at once and queued, in order.
    await asignal(probe.handle, append("first"))
    await asignal(probe.handle, {"flag": True})
    await asignal(probe.handle, log_arg, "third", "!")
    assert await aget_state(probe.handle) == before
    assert probe.messages == []
    assert not gate.release.is_set()

    gate.release.set()
    state = await probe.await_state(lambda s: len(s["log"]) == 2)
    assert state["result"] == EXPECTED_RESULT[name]
    assert state["log"] == ["first", "third!"]
    assert state["flag"] is True
    end = await probe.await_end()
    assert end["type"] == "flow.done"
    # The step's result first, then each signal, in the order they came.
    assert [s.get("result") for s in probe.states] == [EXPECTED_RESULT[name]] * 5
    assert [(s["log"], s.get("flag")) for s in probe.states] == [
        ([], None),
        (["first"], None),
        (["first"], True),
        (["first", "third!"], True),
        (["first", "third!"], True),
    ]


async def test_a_queued_signal_sees_the_state_after_the_steps_result():
    gate = Gate()
    seen: list[dict] = []

    async def work(state: dict) -> Ok:
        await gate.hold()
        return Ok({**state, "synced": 1})

    def observe(state: dict) -> dict:
        seen.append(dict(state))
        return {**state, "observed": True}

    class F(Flows):
        f = flow(run(work), wait_until(lambda s: s.get("go")))

    probe = await astart_clocked(F, "f")
    await gate.entered.wait()
    await asignal(probe.handle, observe)
    gate.release.set()
    await probe.await_state({"observed": True})
    assert seen == [{"synced": 1}]
    await astop(probe.handle)


async def test_an_edit_during_a_sync_is_never_lost():
    # The BookSyncFlow shape: an edit that lands while a sync runs marks the
    # book dirty again after the sync's Ok, and the loop syncs once more.
    first = Gate()
    synced_titles: list[str] = []

    async def sync_book(state: dict) -> Ok:
        if not synced_titles:
            await first.hold()
        synced_titles.append(state["title"])
        return Ok({**state, "dirty": False, "synced_title": state["title"]})

    class BookSync(Flows):
        sync = flow(
            repeat(
                wait_until(lambda s: s["dirty"]),
                set_state(lambda s: {**s, "dirty": "processing"}),
                run(sync_book),
            ),
            initial_state={"dirty": False, "title": "Dune"},
        )

    probe = await astart_clocked(BookSync, "sync")
    await asignal(probe.handle, {"dirty": True})
    await first.entered.wait()
    assert await aget_state(probe.handle) == {"dirty": "processing", "title": "Dune"}
    await asignal(probe.handle, {"dirty": True, "title": "Dune Messiah"})
    first.release.set()
    state = await probe.await_state({"synced_title": "Dune Messiah", "dirty": False})
    assert synced_titles == ["Dune", "Dune Messiah"]
    assert state["title"] == "Dune Messiah"
    # The first sync's Ok landed, then the edit, then the second sync.
    dirty = [s["dirty"] for s in probe.states]
    assert dirty == [True, "processing", False, True, "processing", False]
    await astop(probe.handle)
    assert (await probe.await_end())["type"] == "flow.stopped"


# -- stop ---------------------------------------------------------------------


async def test_stop_cancels_an_in_flight_run_and_subscribers_get_stopped():
    gate = Gate()

    async def work(state: dict) -> Ok:
        await gate.hold()
        return Ok({**state, "result": 1})

    class F(Flows):
        f = flow(set_state(lambda s: {**s, "started": True}), run(work))

    probe = await astart_clocked(F, "f", {"id": 3})
    await gate.entered.wait()
    await asignal(probe.handle, {"queued": True})  # dropped: the step never finishes
    await astop(probe.handle)
    assert gate.cancelled
    assert gate.cleaned_up
    end = probe.final  # astop returns once the flow has ended
    assert end is not None
    assert end == {
        "type": "flow.stopped",
        "flow_id": probe.handle.id,
        "version": 2,
        "state": {"id": 3, "started": True},
    }
    assert probe.kinds == ["flow.state", "flow.stopped"]
    assert await aget_state(probe.handle) == {"id": 3, "started": True}


@pytest.mark.parametrize("step", ["parallel", "race"])
async def test_stop_cancels_every_task_of_a_parallel_or_race(step):
    gates = [Gate() for _ in range(3)]

    def tasks(state: dict) -> list:
        return [gate.hold for gate in gates]

    class F(Flows):
        p = flow(parallel(tasks, collect_as="r"))
        r = flow(race(tasks, collect_as="r"))

    probe = await astart_clocked(F, step[0])
    for gate in gates:
        await gate.entered.wait()
    await astop(probe.handle)
    assert [gate.cancelled for gate in gates] == [True, True, True]
    assert [gate.cleaned_up for gate in gates] == [True, True, True]
    assert probe.final["type"] == "flow.stopped"


async def test_stop_cancels_an_each_in_flight():
    gate = Gate()
    seen: list[int] = []

    async def create(item: int, state: dict) -> None:
        seen.append(item)
        await gate.hold()

    class F(Flows):
        f = flow(each("rows", create))

    probe = await astart_clocked(F, "f", {"rows": [1, 2]})
    await gate.entered.wait()
    await astop(probe.handle)
    assert gate.cancelled
    assert seen == [1]
    assert probe.final["type"] == "flow.stopped"


async def test_stop_while_waiting_ends_the_flow_with_its_current_state():
    class F(Flows):
        f = flow(wait_until(lambda s: False))

    probe = await astart_clocked(F, "f", {"a": 1})
    await asignal(probe.handle, {"b": 2})
    await astop(probe.handle)
    assert probe.final == {
        "type": "flow.stopped",
        "flow_id": probe.handle.id,
        "version": 2,
        "state": {"a": 1, "b": 2},
    }


# -- signal updates ---------------------------------------------------------


class Idle(Flows):
    f = flow(wait_until(lambda s: s.get("done")))


async def test_a_dict_update_is_a_shallow_merge():
    probe = await astart_clocked(Idle, "f", {"a": 1, "nested": {"x": 1, "y": 2}})
    await asignal(probe.handle, {"nested": {"x": 5}, "b": 2})
    assert await aget_state(probe.handle) == {"a": 1, "nested": {"x": 5}, "b": 2}
    await asignal(probe.handle, {"done": True})
    assert (await probe.await_end())["state"]["nested"] == {"x": 5}


async def test_a_callable_update_replaces_the_state_with_its_result():
    def rename(state: dict, old: str, new: str) -> dict:
        state = dict(state)
        state[new] = state.pop(old)
        return state

    probe = await astart_clocked(Idle, "f", {"a": 1, "b": 2})
    await asignal(probe.handle, rename, "a", "z")
    assert await aget_state(probe.handle) == {"z": 1, "b": 2}
    await asignal(probe.handle, lambda s: {"only": True})
    assert await aget_state(probe.handle) == {"only": True}
    signal(probe.handle, lambda s, n: {**s, "n": n}, 5)  # the sync twin, on the loop thread
    assert await aget_state(probe.handle) == {"only": True, "n": 5}
    await astop(probe.handle)


async def test_a_callable_update_gets_a_copy_of_the_state():
    def meddle(state: dict) -> dict:
        state["items"].append("x")  # changes only the copy
        return {**state, "items": ["replaced"]}

    probe = await astart_clocked(Idle, "f", {"items": ["a"]})
    await asignal(probe.handle, meddle)
    assert await aget_state(probe.handle) == {"items": ["replaced"]}
    # The state the function was given was a copy: the start state (which a
    # restart goes back to) still holds only "a".
    assert supervisor.get(probe.handle.id).start_state == {"items": ["a"]}
    await astop(probe.handle)


async def test_extra_args_go_only_with_a_callable_update():
    probe = await astart_clocked(Idle, "f")
    with pytest.raises(FlowArgumentError, match="callable"):
        await asignal(probe.handle, {"a": 1}, "extra")
    with pytest.raises(TypeError):
        await asignal(probe.handle, 42)
    assert await aget_state(probe.handle) == {}
    await astop(probe.handle)


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        (lambda s: None, "returned None, not a dict"),
        (lambda s: [("a", 1)], "returned [('a', 1)], not a dict"),
        (lambda s: 1 / 0, "ZeroDivisionError: division by zero"),
    ],
    ids=["returns None", "returns a list", "raises"],
)
async def test_a_failing_signal_function_crashes_the_flow(update, reason):
    class F(Flows):
        transient = flow(wait_until(lambda s: s.get("done")), initial_state={"v": 0})
        temporary = flow(
            wait_until(lambda s: s.get("done")), initial_state={"v": 0}, restart="temporary"
        )

    # Never restarted: the crash ends the flow with its reason.
    probe = await astart_clocked(F, "temporary")
    await asignal(probe.handle, update)  # the caller is not told; the subscribers are
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert reason in end["reason"]

    # Restarted: the flow starts over from its start state.
    probe = await astart_clocked(F, "transient", {"v": 1})
    await asignal(probe.handle, {"v": 2})
    await asignal(probe.handle, update)
    await probe.await_state({"v": 1})
    assert probe.kinds == ["flow.state", "flow.state"]
    assert probe.states == [{"v": 2}, {"v": 1}]
    await asignal(probe.handle, {"done": True})
    assert (await probe.await_end())["state"] == {"v": 1, "done": True}


@pytest.mark.looptime(False)
async def test_a_sync_function_blocking_its_thread_blocks_neither_reads_nor_signals():
    # Real time: the function really holds a worker thread.
    entered = threading.Event()
    release = threading.Event()

    def sync_book(state: dict) -> Ok:
        entered.set()
        release.wait(10)
        return Ok({**state, "synced": True})

    class F(Flows):
        f = flow(run(sync_book), initial_state={"title": "Dune"})

    probe = await astart_clocked(F, "f")
    assert await asyncio.to_thread(entered.wait, 10)
    try:
        begin = time.monotonic()
        assert get_state(probe.handle) == {"title": "Dune"}
        assert await aget_state(probe.handle) == {"title": "Dune"}
        await asignal(probe.handle, {"title": "Emma"})
        assert get_state(probe.handle) == {"title": "Dune"}
        assert time.monotonic() - begin < 0.5
    finally:
        release.set()
    end = await probe.await_end(timeout=10)
    assert end["state"] == {"title": "Emma", "synced": True}
    # The run's Ok first, then the queued edit; the done message repeats the state.
    assert [s["title"] for s in probe.states] == ["Dune", "Emma", "Emma"]
