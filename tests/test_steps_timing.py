"""Steps that take time or shape the state: wait, wait_until, debounce, sequence, repeat, set_state.

All on looptime's virtual clock: a 60 s wait takes no real time, and when a
step ends is asserted on the loop clock.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from caravela_flow import (
    Flows,
    Ok,
    aget_state,
    asignal,
    astop,
    debounce,
    flow,
    repeat,
    run,
    sequence,
    set_state,
    wait,
    wait_until,
)
from caravela_flow.steps import Repeat, Sequence, Wait
from tests.flows_support import TICK, astart_clocked, now

pytestmark = pytest.mark.looptime


def mark(key: str):
    """A set_state function that sets ``state[key] = True``."""
    return lambda s: {**s, key: True}


def is_ready(state: dict) -> bool:
    return bool(state.get("ready"))


class Timing(Flows):
    wait_250 = flow(set_state(mark("before")), wait(250), set_state(mark("after")))
    wait_delta = flow(wait(timedelta(milliseconds=1500)), set_state(mark("after")))
    wait_1s = flow(wait(1000), set_state(mark("after")))
    until_ready = flow(wait_until(is_ready), set_state(mark("after")))
    until_ready_500 = flow(wait_until(is_ready, timeout=500), set_state(mark("after")))
    debounce_500 = flow(debounce(500), set_state(mark("after")))
    debounce_capped = flow(debounce(500, max_wait=2000), set_state(mark("after")))


# -- wait --------------------------------------------------------------------


async def test_wait_pauses_for_its_milliseconds():
    start = now()
    probe = await astart_clocked(Timing, "wait_250")
    await probe.await_end()
    before = probe.time_of(lambda m: m.get("state", {}).get("before", False))
    after = probe.time_of(lambda m: m.get("state", {}).get("after", False))
    assert before == pytest.approx(start, abs=TICK)
    assert after - before == pytest.approx(0.250, abs=TICK)
    assert probe.kinds == ["flow.state", "flow.state", "flow.done"]


async def test_wait_accepts_a_timedelta():
    start = now()
    probe = await astart_clocked(Timing, "wait_delta")
    await probe.await_end()
    assert probe.end_time() - start == pytest.approx(1.5, abs=TICK)


async def test_signals_during_wait_update_the_state_but_do_not_end_it():
    start = now()
    probe = await astart_clocked(Timing, "wait_1s")
    await asyncio.sleep(0.2)
    await asignal(probe.handle, {"x": 1})
    # Applied at once, while the wait goes on.
    assert await aget_state(probe.handle) == {"x": 1}
    assert probe.kinds == ["flow.state"]
    await asyncio.sleep(0.3)
    await asignal(probe.handle, {"x": 2})
    assert probe.final is None
    end = await probe.await_end()
    assert end["state"] == {"x": 2, "after": True}
    assert probe.end_time() - start == pytest.approx(1.0, abs=TICK)


# -- wait_until ----------------------------------------------------------------


async def test_wait_until_continues_at_once_when_the_predicate_holds():
    start = now()
    probe = await astart_clocked(Timing, "until_ready", {"ready": True})
    end = await probe.await_end()
    assert end["state"] == {"ready": True, "after": True}
    assert probe.end_time() == pytest.approx(start, abs=TICK)


async def test_wait_until_blocks_until_a_signal_makes_the_predicate_true():
    start = now()
    probe = await astart_clocked(Timing, "until_ready", {"ready": False})
    await asyncio.sleep(3600)  # an hour of virtual time: still waiting
    assert probe.final is None
    assert await aget_state(probe.handle) == {"ready": False}
    await asignal(probe.handle, {"ready": True})
    end = await probe.await_end()
    assert end["state"] == {"ready": True, "after": True}
    assert probe.end_time() - start == pytest.approx(3600, abs=TICK)


async def test_wait_until_rechecks_after_every_signal():
    seen: list[int] = []
    checked = asyncio.Event()

    def enough(state: dict) -> bool:
        seen.append(state["n"])
        checked.set()
        return state["n"] >= 3

    async def signal_and_see_it_checked(update: object) -> None:
        checked.clear()
        await asignal(probe.handle, update)
        await checked.wait()

    class Counting(Flows):
        f = flow(wait_until(enough), set_state(mark("after")))

    probe = await astart_clocked(Counting, "f", {"n": 0})
    await checked.wait()
    assert seen == [0]
    for n in (1, 2):
        await signal_and_see_it_checked({"n": n})
        assert probe.final is None, f"ended before the predicate held (n={n})"
    # A signal that leaves the state as it is still makes the step look again.
    await signal_and_see_it_checked({"n": 2})
    assert probe.final is None
    await signal_and_see_it_checked(lambda s: {**s, "n": 3})
    end = await probe.await_end()
    assert end["state"] == {"n": 3, "after": True}
    assert seen == [0, 1, 2, 2, 3]


async def test_wait_until_timeout_fails_the_flow_naming_the_step():
    start = now()
    probe = await astart_clocked(Timing, "until_ready_500", {"ready": False})
    await asyncio.sleep(0.3)
    # A signal that does not satisfy the predicate does not move the deadline.
    await asignal(probe.handle, {"other": 1})
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert end["reason"] == "wait_until(is_ready) timed out after 500 ms"
    assert probe.end_time() - start == pytest.approx(0.5, abs=TICK)
    assert await aget_state(probe.handle) == {"ready": False, "other": 1}


async def test_wait_until_with_timeout_continues_when_satisfied_in_time():
    start = now()
    probe = await astart_clocked(Timing, "until_ready_500", {"ready": False})
    await asyncio.sleep(0.4)
    await asignal(probe.handle, {"ready": True})
    end = await probe.await_end()
    assert end["type"] == "flow.done"
    assert end["state"] == {"ready": True, "after": True}
    assert probe.end_time() - start == pytest.approx(0.4, abs=TICK)
    # Nothing fires later at the old deadline.
    await asyncio.sleep(1)
    assert probe.kinds == ["flow.state", "flow.state", "flow.done"]


# -- debounce -------------------------------------------------------------------


async def test_debounce_continues_after_ms_without_signals():
    start = now()
    probe = await astart_clocked(Timing, "debounce_500")
    await probe.await_end()
    assert probe.end_time() - start == pytest.approx(0.5, abs=TICK)


async def test_debounce_restarts_its_wait_on_every_signal():
    # The Elixir original kept the first timer: it fired at 500 ms whatever
    # came in between. Here each signal pushes the end to 500 ms after it.
    start = now()
    probe = await astart_clocked(Timing, "debounce_500")
    await asyncio.sleep(0.3)
    await asignal(probe.handle, {"edit": 1})
    await asyncio.sleep(0.3)  # t = 0.6: past the first deadline
    assert probe.final is None, "debounce ended at its first deadline despite a signal"
    await asignal(probe.handle, {"edit": 2})
    await asyncio.sleep(0.35)  # t = 0.95: past 0.3 + 0.5
    assert probe.final is None, "debounce ended 500 ms after an older signal"
    end = await probe.await_end()
    assert end["state"] == {"edit": 2, "after": True}
    assert probe.end_time() - start == pytest.approx(1.1, abs=TICK)


async def test_debounce_signal_that_changes_nothing_still_restarts_the_wait():
    start = now()
    probe = await astart_clocked(Timing, "debounce_500", {"edit": 1})
    await asyncio.sleep(0.4)
    await asignal(probe.handle, {"edit": 1})
    await probe.await_end()
    assert probe.end_time() - start == pytest.approx(0.9, abs=TICK)


async def test_debounce_max_wait_bounds_the_delay_under_a_stream_of_signals():
    start = now()
    probe = await astart_clocked(Timing, "debounce_capped")
    sent = 0
    while probe.final is None:
        await asyncio.sleep(0.1)
        if probe.final is None:
            sent += 1
            await asignal(probe.handle, {"edit": sent})
    assert probe.final["type"] == "flow.done"
    assert probe.end_time() - start == pytest.approx(2.0, abs=TICK)
    assert sent >= 19  # signals kept coming right up to the cap


async def test_debounce_without_max_wait_waits_as_long_as_signals_keep_coming():
    start = now()
    probe = await astart_clocked(Timing, "debounce_500")
    for edit in range(1, 51):
        await asyncio.sleep(0.1)
        await asignal(probe.handle, {"edit": edit})
        assert probe.final is None
    last_signal = now()
    end = await probe.await_end()
    assert end["state"] == {"edit": 50, "after": True}
    assert last_signal - start == pytest.approx(5.0, abs=TICK)
    assert probe.end_time() - last_signal == pytest.approx(0.5, abs=TICK)


# -- sequence and repeat ------------------------------------------------------


def append(item: str):
    return lambda s: {**s, "log": [*s["log"], item]}


class Shapes(Flows):
    nested = flow(
        set_state(append("a")),
        sequence(set_state(append("b")), sequence(set_state(append("c")))),
        set_state(append("d")),
        initial_state={"log": []},
    )
    ticking = flow(
        repeat(wait(100), set_state(lambda s: {**s, "n": s["n"] + 1})),
        initial_state={"n": 0},
    )


async def test_sequence_runs_its_steps_in_order_including_nested_ones():
    probe = await astart_clocked(Shapes, "nested")
    end = await probe.await_end()
    assert end["state"] == {"log": ["a", "b", "c", "d"]}
    assert [s["log"] for s in probe.states] == [
        ["a"],
        ["a", "b"],
        ["a", "b", "c"],
        ["a", "b", "c", "d"],
        ["a", "b", "c", "d"],
    ]


def test_repeat_of_several_steps_holds_a_sequence():
    first, second = wait(1), wait(2)
    step = repeat(first, second)
    assert step == Repeat(step=Sequence((first, second)))
    assert isinstance(step.step.steps[0], Wait)


async def test_repeat_loops_its_body_until_stopped():
    start = now()
    probe = await astart_clocked(Shapes, "ticking")
    state = await probe.await_state({"n": 10}, timeout=60)
    assert state == {"n": 10}
    assert probe.time_of(lambda m: m["state"] == {"n": 10}) - start == pytest.approx(1.0, abs=TICK)
    await asyncio.sleep(0.05)
    await astop(probe.handle)
    end = await probe.await_end()
    assert end["type"] == "flow.stopped"
    assert end["state"] == {"n": 10}


async def test_repeat_ends_when_its_body_fails():
    async def check(state: dict):
        if state["n"] == 3:
            raise ValueError("three is enough")
        return Ok(state)

    class Until(Flows):
        f = flow(
            repeat(set_state(lambda s: {**s, "n": s["n"] + 1}), run(check)),
            initial_state={"n": 0},
        )

    probe = await astart_clocked(Until, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert end["reason"] == "ValueError: three is enough"
    assert [s["n"] for s in probe.states] == [1, 2, 3]


async def test_repeat_without_waits_does_not_starve_the_loop():
    class Busy(Flows):
        f = flow(repeat(set_state(lambda s: {**s, "n": s["n"] + 1})), initial_state={"n": 0})

    probe = await astart_clocked(Busy, "f")
    # If the loop were hogged, this test's own coroutine would never resume.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await astop(probe.handle)
    end = await probe.await_end()
    assert end["type"] == "flow.stopped"
    assert end["state"]["n"] >= 1


# -- set_state ----------------------------------------------------------------


async def test_set_state_replaces_the_whole_state():
    class Replace(Flows):
        f = flow(set_state(lambda s: {"only": s["a"] + s["b"]}), initial_state={"a": 1, "b": 2})

    probe = await astart_clocked(Replace, "f")
    end = await probe.await_end()
    assert end["state"] == {"only": 3}
    assert await aget_state(probe.handle) == {"only": 3}


async def test_set_state_gets_a_copy_of_the_state():
    seen: list[dict] = []

    def meddle(state: dict) -> dict:
        state["items"].append("meddled")  # changes only the copy
        seen.append(state)
        return {"items": ["new"]}

    class Copying(Flows):
        f = flow(set_state(meddle), wait_until(lambda s: s.get("go")))

    probe = await astart_clocked(Copying, "f", {"items": ["a"]})
    await probe.await_state({"items": ["new"]})
    assert seen == [{"items": ["a", "meddled"]}]
    # The start state itself was not touched (a restart would start from it).
    from caravela_flow.supervisor import supervisor

    assert supervisor.get(probe.handle.id).start_state == {"items": ["a"]}
    await astop(probe.handle)


async def test_set_state_takes_the_new_value_even_when_python_calls_it_equal():
    # 1 == True and 0 == False in Python, but they are different JSON values.
    class Flag(Flows):
        f = flow(
            set_state(lambda s: {**s, "flag": True}),
            wait_until(lambda s: s.get("go")),
        )

    probe = await astart_clocked(Flag, "f", {"flag": 1})
    state = await probe.await_state(lambda s: s["flag"] is True)
    assert state["flag"] is True
    assert (await aget_state(probe.handle))["flag"] is True
    assert probe.messages[0]["type"] == "flow.state"
    assert probe.messages[0]["state"]["flag"] is True
    await asignal(probe.handle, {"go": True})
    end = await probe.await_end()
    assert end["state"] == {"flag": True, "go": True}
    assert end["state"]["flag"] is True
