"""Worker mode under load: a storm of signals from separate processes to one live flow.

Real parts: a private redis-server, two ``runworker`` processes, and three
sender processes (:mod:`tests.storm_child`) that signal one flow at once with
the default ``REQUEST_TIMEOUT``. DESIGN §9: a call raises ``FlowUnreachable``
only when the flow really cannot be reached, and a signal is applied exactly
when its call returns. ``tests/benchmarks/bench_storm.py`` runs the full-size
storm and prints its figures.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caravela_flow import aget_state, astart, astop
from tests.flowapp.flows import WorkerFlows
from tests.storm_child import collect, start_senders
from tests.test_worker_resilience import hosted_ids
from tests.worker_support import RedisServer, Subscriber, WorkerPool, unique_prefix, worker_mode

pytestmark = pytest.mark.worker

SENDERS = 3
#: Signals per sender (the benchmark's default is 7,000).
PER_SENDER = int(os.environ.get("CARAVELA_FLOW_TEST_STORM", "1500"))
IN_FLIGHT = 50


@pytest.fixture(scope="module")
def storm_workers(redis_server: RedisServer, worker_logs: Path) -> Iterator[WorkerPool]:
    with WorkerPool(redis_server.url, unique_prefix("storm"), worker_logs) as pool:
        pool.spawn(2)
        yield pool


async def test_a_storm_from_three_processes_has_no_false_failure_and_applies_each_success_once(
    redis_server: RedisServer, storm_workers: WorkerPool
) -> None:
    with worker_mode(redis_server.url, storm_workers.prefix, REQUEST_TIMEOUT=5):
        handle = await astart(WorkerFlows, "hold")
        senders = start_senders(
            redis_server.url, storm_workers.prefix, handle.id, PER_SENDER, IN_FLIGHT, SENDERS
        )
        reports = await collect(senders, 120)
        state = await aget_state(handle)
        await astop(handle)
    ok = sum(r["ok"] for r in reports)
    errors = [(r["errors"], r["examples"]) for r in reports if r["errors"]]
    print(
        f"[figure] storm {SENDERS} x {PER_SENDER}: "
        + ", ".join(f"{r['seconds']:.1f} s" for r in reports)
        + f"; {ok} succeeded, count {state['count']}; slowest call "
        + f"{max(r['latencies'][-1] for r in reports if r['latencies']):.2f} s"
    )
    assert errors == []  # no FlowUnreachable (nor anything else) from a live flow
    assert ok == SENDERS * PER_SENDER
    assert state["count"] == ok  # every success applied once, nothing else applied


async def test_a_request_reaching_its_host_after_it_expired_is_refused_and_not_applied(
    redis_server: RedisServer, storm_workers: WorkerPool
) -> None:
    with worker_mode(redis_server.url, storm_workers.prefix):
        handle = await astart(WorkerFlows, "hold")
        [host] = [w for w in storm_workers.workers if handle.id in await hosted_ids(w)]
        async with Subscriber() as subscriber:

            async def send(expires: float) -> dict[str, Any]:
                message = {
                    "type": "caravela.signal",
                    "request": request,
                    "reply": subscriber.channel,
                    "flow_id": handle.id,
                    "update": {"late": True},
                    "expires": expires,
                }
                answered = sum(1 for m in subscriber.messages if m.get("request") == request)
                skip = answered

                def new_answer(m: dict[str, Any]) -> bool:
                    nonlocal skip
                    if m.get("request") != request:
                        return False
                    skip -= 1
                    return skip < 0

                await subscriber.layer.send(host.channel, message)
                return await subscriber.wait_for(new_answer)

            request = uuid.uuid4().hex
            late = await send(time.time() - 1)
            assert (late["ok"], late["error"]) == (False, "expired")
            # A copy of the same request that is not late gets the same answer.
            again = await send(time.time() + 60)
            assert (again["ok"], again["error"]) == (False, "expired")
            assert await aget_state(handle) == {"count": 0}
            request = uuid.uuid4().hex
            assert (await send(time.time() + 60))["ok"] is True
        assert await aget_state(handle) == {"count": 0, "late": True}
        await astop(handle)
