"""The ``run`` step: return shapes, retries, backoff, timeouts, and where fn runs.

Async step functions on looptime's virtual clock, so retry delays are exact;
the thread tests use real time (looptime would step its clock while a thread
works).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest

from caravela_flow import (
    Error,
    Flows,
    Ok,
    Retry,
    aget_state,
    flow,
    run,
)
from tests.flows_support import TICK, astart_clocked, now

virtual = pytest.mark.looptime


# -- return shapes ----------------------------------------------------------


@virtual
async def test_none_continues_with_the_state_unchanged():
    seen: list[dict] = []

    async def look(state: dict) -> None:
        seen.append(state)
        state["scribbled"] = True  # the function gets a copy

    class F(Flows):
        f = flow(run(look), initial_state={"a": 1})

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert seen == [{"a": 1, "scribbled": True}]
    assert probe.kinds == ["flow.done"]
    assert end["state"] == {"a": 1}


@virtual
async def test_ok_continues_with_its_state():
    async def work(state: dict) -> Ok:
        return Ok({**state, "result": state["a"] * 10})

    class F(Flows):
        f = flow(run(work, retries=3), initial_state={"a": 4})

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert probe.kinds == ["flow.state", "flow.done"]
    assert end["state"] == {"a": 4, "result": 40}


@virtual
async def test_retry_takes_its_state_and_tries_again():
    seen: list[int] = []

    async def poll(state: dict) -> Ok | Retry:
        seen.append(state["attempt"])
        if state["attempt"] < 3:
            return Retry({**state, "attempt": state["attempt"] + 1})
        return Ok({**state, "done": True})

    class F(Flows):
        f = flow(run(poll, retries=5, base_delay=10), initial_state={"attempt": 0})

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert seen == [0, 1, 2, 3]
    assert end == {**end, "type": "flow.done", "state": {"attempt": 3, "done": True}}
    # Each Retry's state was the flow's state (and was announced) before the next try.
    assert [s["attempt"] for s in probe.states] == [1, 2, 3, 3, 3]
    assert probe.kinds == ["flow.state"] * 4 + ["flow.done"]


@virtual
async def test_retries_used_up_by_retry_fail_with_retries_exhausted():
    calls = 0

    async def poll(state: dict) -> Retry:
        nonlocal calls
        calls += 1
        return Retry({**state, "polls": state["polls"] + 1})

    class F(Flows):
        f = flow(run(poll, retries=2, base_delay=10), initial_state={"polls": 0})

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert calls == 3
    assert end["type"] == "flow.error"
    assert end["reason"] == "retries exhausted"
    assert await aget_state(probe.handle) == {"polls": 3}


@virtual
async def test_error_is_retried_with_the_unchanged_state_and_fails_with_the_last_reason():
    seen: list[dict] = []

    async def flaky(state: dict) -> Error:
        seen.append(state)
        return Error(f"attempt {len(seen)} failed")

    class F(Flows):
        f = flow(run(flaky, retries=2, base_delay=10), initial_state={"a": 1})

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert seen == [{"a": 1}] * 3
    assert end["type"] == "flow.error"
    assert end["reason"] == "attempt 3 failed"
    assert probe.kinds == ["flow.error"]


@virtual
async def test_error_reason_that_is_not_a_string_is_given_as_str():
    async def fail(state: dict) -> Error:
        return Error(404)

    class F(Flows):
        f = flow(run(fail))

    probe = await astart_clocked(F, "f")
    assert (await probe.await_end())["reason"] == "404"


@virtual
async def test_error_then_success_continues():
    calls = 0

    async def flaky(state: dict) -> Error | Ok:
        nonlocal calls
        calls += 1
        return Error("not yet") if calls < 3 else Ok({**state, "ok": calls})

    class F(Flows):
        f = flow(run(flaky, retries=2, base_delay=10))

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.done"
    assert end["state"] == {"ok": 3}


@virtual
@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ValueError("bad input"), "ValueError: bad input"),
        (RuntimeError(), "RuntimeError"),
        (KeyError("book_id"), "KeyError: 'book_id'"),
    ],
)
async def test_a_raised_exception_is_retried_and_its_reason_is_type_and_message(exc, reason):
    calls = 0

    async def explode(state: dict) -> None:
        nonlocal calls
        calls += 1
        raise exc

    class F(Flows):
        f = flow(run(explode, retries=1, base_delay=10))

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert calls == 2
    assert end["type"] == "flow.error"
    assert end["reason"] == reason


@virtual
async def test_a_raised_timeout_error_is_an_ordinary_failed_attempt():
    # TimeoutError raised by the function itself (a socket timeout, say) is
    # not the step's timeout: it is reported as what it is, and retried.
    calls = 0

    async def fetch(state: dict) -> Ok:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TimeoutError("read timed out")
        return Ok({"fetched": True})

    async def always(state: dict) -> None:
        raise TimeoutError("read timed out")

    class F(Flows):
        recovers = flow(run(fetch, retries=1, base_delay=10))
        gives_up = flow(run(always, retries=1, base_delay=10))
        gives_up_with_timeout = flow(run(always, retries=1, base_delay=10, timeout=5000))

    probe = await astart_clocked(F, "recovers")
    assert (await probe.await_end())["state"] == {"fetched": True}
    assert calls == 2
    for name in ("gives_up", "gives_up_with_timeout"):
        probe = await astart_clocked(F, name)
        end = await probe.await_end()
        assert end["type"] == "flow.error"
        assert end["reason"] == "TimeoutError: read timed out"


@virtual
@pytest.mark.parametrize("value", [{"plain": "dict"}, 42, "done", True, [1, 2]])
async def test_any_other_return_value_fails_at_once_naming_it(value):
    calls = 0

    async def odd(state: dict):
        nonlocal calls
        calls += 1
        return value

    class F(Flows):
        f = flow(run(odd, retries=3, base_delay=10))

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert calls == 1, "an unexpected value must not be retried"
    assert end["type"] == "flow.error"
    assert f"run({odd.__qualname__})" in end["reason"]
    assert repr(value) in end["reason"]
    # Only one failure: no restart.
    assert probe.kinds == ["flow.error"]


@virtual
@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (Ok(5), "Ok(...) returned 5, not a dict"),
        (Retry(None), "Retry(...) returned None, not a dict"),
        (Ok({"book": object()}), "value['book'] is a builtins.object"),
    ],
    ids=["Ok of a non-dict", "Retry of a non-dict", "Ok of a state that cannot travel"],
)
async def test_a_bad_state_in_ok_or_retry_fails_at_once_without_running_again(result, reason):
    calls = 0

    async def sync(state: dict) -> object:
        nonlocal calls
        calls += 1
        return result

    class F(Flows):
        f = flow(run(sync, retries=3, base_delay=10), initial_state={"a": 1})

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert f"run({sync.__qualname__})" in end["reason"]
    assert reason in end["reason"]
    # Neither retried nor restarted: the work is not done again.
    assert calls == 1
    assert probe.kinds == ["flow.error"]
    assert await aget_state(probe.handle) == {"a": 1}


# -- backoff ---------------------------------------------------------------


def _attempt_clock() -> tuple[list[float], object]:
    times: list[float] = []

    async def fail(state: dict) -> Error:
        times.append(now())
        return Error("again")

    return times, fail


def _gaps_ms(times: list[float]) -> list[float]:
    return [round((b - a) * 1000, 1) for a, b in itertools.pairwise(times)]


@virtual
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"backoff": "constant", "base_delay": 100}, [100, 100, 100, 100]),
        ({"backoff": "linear", "base_delay": 100}, [100, 200, 300, 400]),
        ({"backoff": "exponential", "base_delay": 100}, [100, 200, 400, 800]),
        ({"base_delay": 50}, [50, 100, 200, 400]),  # exponential is the default
        ({}, [100, 200, 400, 800]),  # and 100 ms the default base
        ({"backoff": "exponential", "base_delay": 100, "max_delay": 250}, [100, 200, 250, 250]),
        ({"backoff": "linear", "base_delay": 100, "max_delay": 250}, [100, 200, 250, 250]),
        ({"backoff": "constant", "base_delay": 300, "max_delay": 200}, [200, 200, 200, 200]),
    ],
)
async def test_delay_before_each_retry(options, expected):
    times, fail = _attempt_clock()

    class F(Flows):
        f = flow(run(fail, retries=4, **options))

    probe = await astart_clocked(F, "f")
    await probe.await_end(timeout=60)
    assert len(times) == 5
    assert _gaps_ms(times) == pytest.approx(expected, abs=1)
    # The flow fails as soon as the last attempt does: no delay after it.
    assert probe.end_time() == pytest.approx(times[-1], abs=TICK)


@virtual
async def test_jitter_draws_each_delay_between_half_and_all_of_it():
    times, fail = _attempt_clock()

    class F(Flows):
        f = flow(run(fail, retries=8, base_delay=100, max_delay=1000, jitter=True))

    probe = await astart_clocked(F, "f")
    await probe.await_end(timeout=60)
    full = [100, 200, 400, 800, 1000, 1000, 1000, 1000]
    gaps = _gaps_ms(times)
    assert len(gaps) == 8
    for gap, delay in zip(gaps, full, strict=True):
        assert delay / 2 - 1 <= gap <= delay + 1, (gaps, full)
    assert any(gap < delay - 2 for gap, delay in zip(gaps, full, strict=True)), (
        f"no delay was shortened: {gaps}"
    )


# -- timeout ----------------------------------------------------------------


@virtual
async def test_timeout_counts_as_a_failed_attempt():
    starts: list[float] = []
    cancelled: list[int] = []

    async def slow(state: dict) -> Ok:
        starts.append(now())
        try:
            if len(starts) < 3:
                await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(len(starts))
            raise
        return Ok({"attempts": len(starts)})

    class F(Flows):
        f = flow(run(slow, retries=2, base_delay=50, backoff="constant", timeout=100))

    start = now()
    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.done"
    assert end["state"] == {"attempts": 3}
    assert cancelled == [1, 2]  # the timed-out attempts were cancelled, not left running
    assert [round((t - start) * 1000) for t in starts] == [0, 150, 300]


@virtual
async def test_timeout_on_the_last_attempt_fails_the_flow_and_says_so():
    async def slow(state: dict) -> None:
        await asyncio.sleep(10)

    class F(Flows):
        f = flow(run(slow, retries=1, base_delay=10, timeout=100))

    start = now()
    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["type"] == "flow.error"
    assert end["reason"] == f"run({slow.__qualname__}) timed out after 100 ms"
    assert probe.end_time() - start == pytest.approx(0.21, abs=TICK)


@virtual
async def test_the_last_attempt_gives_the_reason_even_after_a_timeout():
    calls = 0

    async def mixed(state: dict) -> Error:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)
        return Error("refused")

    class F(Flows):
        f = flow(run(mixed, retries=1, base_delay=10, timeout=100))

    probe = await astart_clocked(F, "f")
    assert (await probe.await_end())["reason"] == "refused"


# -- where fn runs ----------------------------------------------------------


@virtual
async def test_async_fn_runs_on_the_flow_loop():
    where: list[tuple[int, asyncio.AbstractEventLoop]] = []

    async def here(state: dict) -> None:
        where.append((threading.get_ident(), asyncio.get_running_loop()))

    class F(Flows):
        f = flow(run(here))

    probe = await astart_clocked(F, "f")
    await probe.await_end()
    assert where == [(threading.get_ident(), asyncio.get_running_loop())]


async def test_sync_fn_runs_in_a_worker_thread():
    where: list[int] = []

    def blocking(state: dict) -> Ok:
        where.append(threading.get_ident())
        time.sleep(0.01)  # blocking I/O is fine here
        return Ok({**state, "synced": True})

    class F(Flows):
        f = flow(run(blocking))

    probe = await astart_clocked(F, "f")
    end = await probe.await_end()
    assert end["state"] == {"synced": True}
    assert len(where) == 1
    assert where[0] != threading.get_ident()


async def test_sync_fn_returning_an_awaitable_has_it_awaited_on_the_loop():
    loop = asyncio.get_running_loop()

    async def fetch(state: dict) -> Ok:
        assert asyncio.get_running_loop() is loop
        return Ok({"fetched": state["id"]})

    class F(Flows):
        f = flow(run(lambda s: fetch(s)), initial_state={"id": 7})

    probe = await astart_clocked(F, "f")
    assert (await probe.await_end())["state"] == {"fetched": 7}


async def test_sync_runs_of_several_flows_overlap():
    # asgiref's sync_to_async(thread_sensitive=True) would run these one at a
    # time on a single thread: 4 x 0.5 s = 2 s. They must take about 0.5 s.
    threads: set[int] = set()

    def sync_book(state: dict) -> Ok:
        threads.add(threading.get_ident())
        time.sleep(0.5)
        return Ok({**state, "synced": True})

    class F(Flows):
        f = flow(run(sync_book))

    start = time.monotonic()
    probes = [await astart_clocked(F, "f", {"n": n}) for n in range(4)]
    ends = [await probe.await_end(timeout=10) for probe in probes]
    elapsed = time.monotonic() - start
    assert [end["state"] for end in ends] == [{"n": n, "synced": True} for n in range(4)]
    assert len(threads) == 4
    assert 0.5 <= elapsed < 1.5, f"4 sync runs took {elapsed:.2f} s"
