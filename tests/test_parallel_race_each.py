"""The fan-out steps: parallel, race and each.

Async tasks on looptime's virtual clock (durations are exact); the tests
with sync tasks, which run in threads, use real time.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from caravela_flow import (
    Error,
    Flows,
    Ok,
    Skip,
    aget_state,
    each,
    flow,
    parallel,
    race,
    set_state,
)
from tests.flows_support import TICK, astart_clocked, now

virtual = pytest.mark.looptime


class Tracker:
    """Async tasks that record starts, ends and cancellations, and the peak in flight."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.in_flight = 0
        self.peak = 0

    def task(self, name: str, seconds: float, result: object = None, fail: object = None):
        async def body() -> object:
            self.started.append(name)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                self.cancelled.append(name)
                raise
            finally:
                self.in_flight -= 1
            self.finished.append(name)
            if isinstance(fail, BaseException):
                raise fail
            if fail is not None:
                return Error(fail)
            return name if result is None else result

        return body


# -- parallel -----------------------------------------------------------------


@virtual
async def test_parallel_collects_results_in_input_order_in_about_the_slowest_time():
    t = Tracker()

    def tasks(state: dict) -> list:
        return [t.task("slow", 0.3), t.task("fast", 0.1), t.task("mid", 0.2, Ok({"x": 1}))]

    class F(Flows):
        f = flow(parallel(tasks, collect_as="results"), initial_state={"keep": 1})

    start = now()
    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.done"
    # Ok(value) from a task gives the value.
    assert end["state"] == {"keep": 1, "results": ["slow", "fast", {"x": 1}]}
    assert t.finished == ["fast", "mid", "slow"]
    assert probe.end_time() - start == pytest.approx(0.3, abs=TICK)  # not 0.6
    assert t.peak == 3


@virtual
async def test_parallel_builder_gets_the_state_and_a_fixed_list_works_too():
    t = Tracker()

    def per_id(state: dict) -> list:
        return [t.task(f"id{i}", 0.1, i * 10) for i in state["ids"]]

    class F(Flows):
        built = flow(parallel(per_id, collect_as="out"), initial_state={"ids": [1, 2, 3]})
        fixed = flow(parallel([t.task("a", 0.2), t.task("b", 0.1)], collect_as="out"))

    probe = await astart_clocked(F, "built")
    assert (await probe.await_end())["state"] == {"ids": [1, 2, 3], "out": [10, 20, 30]}
    probe = await astart_clocked(F, "fixed")
    assert (await probe.await_end())["state"] == {"out": ["a", "b"]}


@virtual
@pytest.mark.parametrize("source", ["empty list", "builder returns []", "builder returns None"])
async def test_parallel_with_no_tasks_stores_an_empty_list(source):
    fn = {
        "empty list": [],
        "builder returns []": lambda s: [],
        "builder returns None": lambda s: None,
    }

    class F(Flows):
        f = flow(parallel(fn[source], collect_as="results"))

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.done"
    assert end["state"] == {"results": []}


async def test_parallel_runs_sync_and_async_tasks_together():
    # Real time: the sync tasks block threads for real.
    def sync_task(n: int):
        def body() -> int:
            time.sleep(0.4)
            return n

        return body

    async def async_task() -> str:
        await asyncio.sleep(0.4)
        return "async"

    class F(Flows):
        f = flow(
            parallel(
                lambda s: [sync_task(1), async_task, sync_task(2), sync_task(3)],
                collect_as="results",
            )
        )

    start = time.monotonic()
    probe = await astart_clocked(F, "f")
    end = await probe.await_end(timeout=10)
    elapsed = time.monotonic() - start
    assert end["state"] == {"results": [1, "async", 2, 3]}
    assert elapsed < 1.2, f"4 x 0.4 s tasks took {elapsed:.2f} s; they did not overlap"


@virtual
@pytest.mark.parametrize(
    ("failure", "reason"),
    [(ValueError("boom"), "ValueError: boom"), ("quota exceeded", "quota exceeded")],
    ids=["raises", "returns Error"],
)
async def test_parallel_first_failure_cancels_the_rest_and_fails_the_flow(failure, reason):
    t = Tracker()

    def tasks(state: dict) -> list:
        return [
            t.task("a", 1.0),
            t.task("fails", 0.1, fail=failure),
            t.task("b", 0.5),
            t.task("fails later", 0.2, fail="second failure"),
        ]

    class F(Flows):
        f = flow(parallel(tasks, collect_as="results"), set_state(lambda s: {**s, "after": 1}))

    start = now()
    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert end["reason"] == reason
    assert probe.end_time() - start == pytest.approx(0.1, abs=TICK)
    assert sorted(t.cancelled) == ["a", "b", "fails later"]
    assert t.finished == ["fails"]
    await asyncio.sleep(2)  # nothing of the cancelled tasks runs on
    assert t.finished == ["fails"]
    assert await aget_state(probe.handle) == {}
    assert probe.kinds == ["flow.error"]  # no restart: a task failure is not a crash


@virtual
async def test_parallel_max_concurrency_limits_tasks_in_flight():
    t = Tracker()

    class F(Flows):
        f = flow(
            parallel(
                lambda s: [t.task(f"t{i}", 0.1, i) for i in range(7)],
                collect_as="results",
                max_concurrency=2,
            )
        )

    start = now()
    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["state"] == {"results": list(range(7))}
    assert t.peak == 2
    assert probe.end_time() - start == pytest.approx(0.4, abs=TICK)  # ceil(7 / 2) rounds


@virtual
async def test_parallel_max_concurrency_above_the_task_count_runs_all_at_once():
    t = Tracker()

    class F(Flows):
        f = flow(
            parallel(
                lambda s: [t.task(f"t{i}", 0.1) for i in range(3)],
                collect_as="r",
                max_concurrency=10,
            )
        )

    probe = await astart_clocked(F, "f")
    await probe.await_end()
    assert t.peak == 3


@virtual
async def test_parallel_timeout_is_one_overall_deadline():
    # Each task fits in the timeout; all of them one after another do not.
    t = Tracker()

    class F(Flows):
        f = flow(
            parallel(
                lambda s: [t.task(f"t{i}", 0.3) for i in range(3)],
                collect_as="results",
                max_concurrency=1,
                timeout=500,
            )
        )

    start = now()
    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert end["reason"] == "parallel(collect_as='results') timed out after 500 ms"
    assert probe.end_time() - start == pytest.approx(0.5, abs=TICK)
    assert t.finished == ["t0"]
    assert t.cancelled == ["t1"]
    assert t.started == ["t0", "t1"]  # t2 never started


@virtual
async def test_parallel_within_its_timeout_succeeds():
    t = Tracker()

    class F(Flows):
        f = flow(parallel(lambda s: [t.task("a", 0.3), t.task("b", 0.4)], "r", timeout=500))

    probe = await astart_clocked(F, "f")
    assert (await probe.await_end())["state"] == {"r": ["a", "b"]}


@virtual
async def test_parallel_result_that_cannot_travel_fails_the_flow_without_a_restart():
    runs = 0

    async def fetch() -> object:
        nonlocal runs
        runs += 1
        return object()

    class F(Flows):
        f = flow(parallel([fetch], collect_as="r"))

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert "value['r'][0] is a builtins.object" in end["reason"]
    assert runs == 1
    assert probe.kinds == ["flow.error"]


# -- race ---------------------------------------------------------------------


@virtual
async def test_race_first_success_wins_even_after_an_earlier_failure():
    t = Tracker()

    def tasks(state: dict) -> list:
        return [
            t.task("slow winner", 0.3),
            t.task("fails first", 0.05, fail=ValueError("mirror down")),
            t.task("winner", 0.1, Ok({"from": "mirror 2"})),
            t.task("loser", 0.2),
        ]

    class F(Flows):
        f = flow(race(tasks, collect_as="answer"), initial_state={"q": "dune"})

    start = now()
    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.done"
    assert end["state"] == {"q": "dune", "answer": {"from": "mirror 2"}}
    assert probe.end_time() - start == pytest.approx(0.1, abs=TICK)
    assert sorted(t.cancelled) == ["loser", "slow winner"]
    await asyncio.sleep(1)
    assert t.finished == ["fails first", "winner"]


@virtual
async def test_race_of_a_fixed_list():
    t = Tracker()

    class F(Flows):
        f = flow(race([t.task("a", 0.2), t.task("b", 0.1)], collect_as="answer"))

    probe = await astart_clocked(F, "f")
    assert (await probe.await_end())["state"] == {"answer": "b"}


@virtual
async def test_race_fails_when_every_task_fails():
    t = Tracker()

    class F(Flows):
        f = flow(
            race(
                lambda s: [
                    t.task("a", 0.1, fail="a refused"),
                    t.task("b", 0.2, fail=RuntimeError("b broke")),
                ],
                collect_as="answer",
            )
        )

    start = now()
    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert end["reason"].startswith("race(collect_as='answer')")
    assert "all 2 tasks failed" in end["reason"]
    assert end["reason"].endswith("RuntimeError: b broke")
    assert probe.end_time() - start == pytest.approx(0.2, abs=TICK)
    assert probe.kinds == ["flow.error"]


@virtual
async def test_race_winner_that_cannot_travel_fails_the_flow_without_a_restart():
    runs = 0

    async def fetch() -> object:
        nonlocal runs
        runs += 1
        return {1, 2}

    class F(Flows):
        f = flow(race([fetch], collect_as="answer"))

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert "value['answer'] is a builtins.set" in end["reason"]
    assert runs == 1
    assert probe.kinds == ["flow.error"]


@virtual
@pytest.mark.parametrize("fn", [[], lambda s: []], ids=["empty list", "builder returns []"])
async def test_race_with_no_tasks_fails(fn):
    class F(Flows):
        f = flow(race(fn, collect_as="answer"))

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert end["reason"] == "race(collect_as='answer') has no tasks to race"


@virtual
async def test_race_timeout_fails_and_cancels_the_tasks():
    t = Tracker()

    class F(Flows):
        f = flow(race(lambda s: [t.task("a", 1), t.task("b", 2)], collect_as="answer", timeout=200))

    start = now()
    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert end["reason"] == "race(collect_as='answer') timed out after 200 ms"
    assert probe.end_time() - start == pytest.approx(0.2, abs=TICK)
    assert sorted(t.cancelled) == ["a", "b"]


async def test_race_with_sync_tasks():
    def answer(value: str, seconds: float):
        def body() -> str:
            time.sleep(seconds)
            return value

        return body

    class F(Flows):
        f = flow(race(lambda s: [answer("slow", 1.0), answer("fast", 0.05)], "answer"))

    start = time.monotonic()
    probe = await astart_clocked(F, "f")
    end = await probe.await_end(timeout=10)
    assert end["state"] == {"answer": "fast"}
    assert time.monotonic() - start < 0.9  # did not wait for the slow one


# -- each ---------------------------------------------------------------------


@virtual
async def test_each_ok_and_none_continue_and_each_ok_is_progress():
    calls: list[tuple[int, dict]] = []

    async def add(item: int, state: dict) -> Ok | None:
        calls.append((item, state))
        await asyncio.sleep(0.1)
        if item % 2:
            return Ok({**state, "total": state["total"] + item})
        return None

    class F(Flows):
        f = flow(each("items", add), initial_state={"items": [1, 2, 3, 4, 5], "total": 0})

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.done"
    assert end["state"] == {"items": [1, 2, 3, 4, 5], "total": 9}
    # fn got each item with the state as it was after the items before it.
    assert [(item, state["total"]) for item, state in calls] == [
        (1, 0),
        (2, 1),
        (3, 1),
        (4, 4),
        (5, 4),
    ]
    # One flow.state per Ok, as it happens.
    assert probe.kinds == ["flow.state"] * 3 + ["flow.done"]
    assert [s["total"] for s in probe.states] == [1, 4, 9, 9]
    assert probe.times[0] < probe.times[1] < probe.times[2]


@virtual
async def test_each_skip_continues_with_the_state_unchanged():
    seen: list[str] = []

    async def create(item: str, state: dict) -> Ok | Skip:
        seen.append(item)
        if item in state["created"]:
            return Skip(f"{item} already exists")
        return Ok({**state, "created": [*state["created"], item]})

    class F(Flows):
        f = flow(each("titles", create))

    probe = await astart_clocked(
        F, "f", {"titles": ["Dune", "Emma", "Dune", "Ubik"], "created": []}
    )
    end = await probe.await_end()
    assert seen == ["Dune", "Emma", "Dune", "Ubik"]
    assert end["state"]["created"] == ["Dune", "Emma", "Ubik"]
    assert probe.kinds == ["flow.state"] * 3 + ["flow.done"]


@virtual
@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (Error("row 2 is invalid"), "row 2 is invalid"),
        (ValueError("bad row"), "ValueError: bad row"),
    ],
    ids=["returns Error", "raises"],
)
async def test_each_error_or_exception_fails_the_flow_keeping_progress(outcome, reason):
    seen: list[int] = []

    async def create(item: int, state: dict) -> Ok | Error:
        seen.append(item)
        if item == 2:
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return Ok({**state, "done": [*state["done"], item]})

    class F(Flows):
        f = flow(each("rows", create), set_state(lambda s: {**s, "after": True}))

    probe = await astart_clocked(F, "f", {"rows": [1, 2, 3], "done": []})
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert end["reason"] == reason
    assert seen == [1, 2]  # neither retried nor continued
    assert await aget_state(probe.handle) == {"rows": [1, 2, 3], "done": [1]}
    assert probe.kinds == ["flow.state", "flow.error"]  # no restart


@virtual
async def test_each_missing_key_fails_naming_the_key():
    called = False

    async def create(item: object, state: dict) -> None:
        nonlocal called
        called = True

    class F(Flows):
        f = flow(each("rows", create))

    probe = await astart_clocked(F, "f", {"other": []})
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert "'rows'" in end["reason"]
    assert "each('rows')" in end["reason"]
    assert not called


@virtual
async def test_each_over_an_empty_list_continues():
    async def create(item: object, state: dict) -> None:
        raise AssertionError("no items, no calls")

    class F(Flows):
        f = flow(each("rows", create), set_state(lambda s: {**s, "after": True}))

    probe = await astart_clocked(F, "f", {"rows": []})
    assert (await probe.await_end())["state"] == {"rows": [], "after": True}


@virtual
async def test_each_unexpected_return_value_fails_naming_it():
    async def create(item: int, state: dict) -> object:
        return {"not": "wrapped"}

    class F(Flows):
        f = flow(each("rows", create))

    probe = await astart_clocked(F, "f", {"rows": [1]})
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert "{'not': 'wrapped'}" in end["reason"]


@virtual
async def test_each_ok_with_a_bad_state_fails_the_flow_without_a_restart():
    seen: list[int] = []

    async def create(item: int, state: dict) -> Ok:
        seen.append(item)
        return Ok(item)

    class F(Flows):
        f = flow(each("rows", create))

    probe = await astart_clocked(F, "f", {"rows": [1, 2]})
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert "each('rows') Ok(...) returned 1, not a dict" in end["reason"]
    assert seen == [1]
    assert probe.kinds == ["flow.error"]


async def test_each_with_a_sync_function_runs_it_in_a_thread():
    import threading

    threads: list[int] = []

    def create(item: int, state: dict) -> Ok:
        threads.append(threading.get_ident())
        return Ok({**state, "sum": state["sum"] + item})

    class F(Flows):
        f = flow(each("rows", create), initial_state={"sum": 0})

    probe = await astart_clocked(F, "f", {"rows": [1, 2, 3]})
    end = await probe.await_end(timeout=10)
    assert end["state"] == {"rows": [1, 2, 3], "sum": 6}
    assert threading.get_ident() not in threads
