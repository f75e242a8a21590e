"""Worker mode when things go wrong: no worker, a killed worker, a stopped worker, bad messages.

Real parts only: a private redis-server, ``runworker`` processes, signals
sent to them, and raw messages sent on the channel layer as a buggy or
hostile peer would.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from caravela_flow import (
    FlowNotFound,
    Flows,
    NoWorkerAvailable,
    aget_state,
    asignal,
    astart,
    flow,
    remote,
    wait,
)
from caravela_flow.api import backend
from caravela_flow.errors import FlowUnreachable
from caravela_flow.groups import flow_group
from tests.flowapp.flows import WorkerFlows, increment, tag
from tests.worker_support import (
    WORKER_CHANNEL,
    RedisServer,
    Subscriber,
    Worker,
    WorkerPool,
    unique_prefix,
    worker_mode,
)

pytestmark = pytest.mark.worker

SHUTDOWN_REASON = "worker shutting down"
UNREADABLE = "host: receive failed|Exception inside application: int is not allowed"


class NotOnWorkers(Flows):
    """Declared in a test module, not in an installed app: no worker can run it."""

    gone = flow(wait(10))


def final(message: dict[str, Any]) -> bool:
    return message["type"] in ("flow.done", "flow.error", "flow.stopped")


async def hosted_ids(worker: Worker) -> set[str]:
    async with Subscriber() as subscriber:
        return {f["id"] for f in await subscriber.hosted(worker)}


async def start_on_both(first: Worker, second: Worker) -> tuple[set[str], set[str]]:
    """Start flows until each worker hosts some; returns their ids on each worker."""
    for _ in range(5):
        for _ in range(6):
            await astart(WorkerFlows, "hold")
        on_first, on_second = await hosted_ids(first), await hosted_ids(second)
        if on_first and on_second:
            return on_first, on_second
    raise AssertionError("30 starts all went to one worker")


# -- no worker -------------------------------------------------------------------


async def test_no_worker_available_within_the_start_timeout_and_the_start_never_happens(
    make_pool: Callable[[], WorkerPool], redis_server: RedisServer
) -> None:
    pool = make_pool()
    with worker_mode(redis_server.url, pool.prefix, START_TIMEOUT=1):
        begun = time.monotonic()
        with pytest.raises(NoWorkerAvailable, match="within 1 s"):
            await astart(WorkerFlows, "hold", {"label": "orphan"})
        elapsed = time.monotonic() - begun
        assert 1 <= elapsed < 4, elapsed
        assert remote.client()._waiters == {}  # the caller left nothing behind

        # The request is still queued in Redis when a worker comes up: the worker
        # must not start it. It reads requests in order, so once a later start
        # has made the round trip, the stale one has been handled.
        [worker] = pool.spawn(1)
        with override_settings(CARAVELA_FLOW={"MODE": "worker", "START_TIMEOUT": 10}):
            later = await astart(WorkerFlows, "hold", {"label": "later"})
            assert await hosted_ids(worker) == {later.id}
            assert [info.id for info in await backend().aflows()] == [later.id]


# -- a worker dies -----------------------------------------------------------------


async def test_after_kill_9_of_one_worker_the_other_worker_s_flows_keep_working(
    make_pool: Callable[[], WorkerPool], redis_server: RedisServer
) -> None:
    pool = make_pool()
    victim, survivor = pool.spawn(2)
    with worker_mode(redis_server.url, pool.prefix, REQUEST_TIMEOUT=2):
        lost, kept = await start_on_both(victim, survivor)

        victim.kill()

        await asyncio.gather(*(asignal(flow_id, increment) for flow_id in kept))
        states = await asyncio.gather(*(aget_state(flow_id) for flow_id in kept))
        assert all(state["count"] == 1 for state in states)

        begun = time.monotonic()
        calls = [aget_state(i) for i in lost] + [asignal(i, increment) for i in lost]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, FlowUnreachable) for r in results), results
        assert all(isinstance(r, FlowNotFound) for r in results)
        assert time.monotonic() - begun < 6

        # New flows go to the worker that is left.
        handle = await astart(WorkerFlows, "hold")
        assert handle.id in await hosted_ids(survivor)


# -- a worker is stopped --------------------------------------------------------------


async def test_sigterm_ends_the_worker_s_flows_with_an_error_and_exits_promptly(
    make_pool: Callable[[], WorkerPool], redis_server: RedisServer
) -> None:
    pool = make_pool()
    stopping, staying = pool.spawn(2)
    with worker_mode(redis_server.url, pool.prefix, START_TIMEOUT=5):
        ending, kept = await start_on_both(stopping, staying)
        async with Subscriber() as subscriber:
            for flow_id in ending | kept:
                await subscriber.join(flow_group(flow_id))
            mark = len(stopping.lines)
            begun = time.monotonic()

            stopping.send_signal(signal.SIGTERM)

            line = await stopping.await_line(r"stopping (\d+) flows", 10, start=mark)
            assert int(line.group(1)) == len(ending)
            # Starts sent while it shuts down go to the other worker, none is lost.
            late = await asyncio.gather(*(astart(WorkerFlows, "hold") for _ in range(10)))
            for flow_id in ending:
                end = await subscriber.wait_for(lambda m, i=flow_id: m["flow_id"] == i and final(m))
                assert (end["type"], end["reason"]) == ("flow.error", SHUTDOWN_REASON)
            code = await asyncio.to_thread(stopping.wait, 10)
            elapsed = time.monotonic() - begun

            assert code == 0
            assert elapsed < 10, elapsed
            assert stopping.wait_for("worker stopped", 1)
            assert {h.id for h in late} <= await hosted_ids(staying)
            # The other worker's flows go on.
            await asyncio.gather(*(asignal(flow_id, increment) for flow_id in kept))
            states = await asyncio.gather(*(aget_state(flow_id) for flow_id in kept))
            assert [state["count"] for state in states] == [1] * len(kept)
            assert not [m for m in subscriber.messages if m["flow_id"] in kept and final(m)]


# -- bad messages --------------------------------------------------------------------


@pytest.fixture(scope="module")
def lone_worker(redis_server: RedisServer, worker_logs: Path) -> Iterator[WorkerPool]:
    with WorkerPool(redis_server.url, unique_prefix("lone-worker"), worker_logs) as pool:
        pool.spawn(1)
        yield pool


@pytest.fixture
def lone(redis_server: RedisServer, lone_worker: WorkerPool) -> Iterator[Worker]:
    with worker_mode(redis_server.url, lone_worker.prefix, START_TIMEOUT=5):
        yield lone_worker.workers[0]


async def test_malformed_messages_are_logged_and_dropped_and_the_worker_keeps_serving(
    lone: Worker,
) -> None:
    async with Subscriber() as peer:
        # On the channel every worker reads…
        sent: list[tuple[str, dict[Any, Any], str]] = [
            (WORKER_CHANNEL, {"no": "type"}, "dropped a message with no type"),
            (WORKER_CHANNEL, {"type": "caravela.nope"}, "unknown type 'caravela.nope'"),
            (WORKER_CHANNEL, {"type": "caravela.start", "request": 5}, "refused a malformed"),
            (WORKER_CHANNEL, {"type": "x", 1: "int key"}, "receive on caravela-flows failed"),
            # …and on the worker host's own channel.
            (lone.channel, {"type": 7}, "unknown type 7"),
            (lone.channel, {"type": "caravela.signal", "flow_id": None}, "refused a malformed"),
            # All channels of a process share one Redis key, so whichever receiver of
            # the worker reads this one fails on it: the host's or the consumer's.
            (lone.channel, {"type": "x", 2: "int key"}, UNREADABLE),
        ]
        for channel, message, logged in sent:
            mark = len(lone.lines)
            await peer.layer.send(channel, message)
            await lone.await_line(logged, 20, start=mark)

        # Starts with bad fields are refused with a reason, not dropped silently.
        base = {"type": "caravela.start", "flow": WorkerFlows.hold.key, "state": {}}
        refusal = await peer.ask(WORKER_CHANNEL, {**base, "flow_id": "not-a-flow-id"})
        assert (refusal["type"], refusal["error"]) == ("caravela.refuse", "bad_request")
        refusal = await peer.ask(WORKER_CHANNEL, {**base, "flow_id": uuid.uuid4().hex, "state": 3})
        assert (refusal["type"], refusal["error"]) == ("caravela.refuse", "bad_request")
        refusal = await peer.ask(WORKER_CHANNEL, {**base, "flow": "no.such.Flows.key"})
        assert (refusal["type"], refusal["error"]) == ("caravela.refuse", "not_found")

    assert lone.running()
    handle = await astart(WorkerFlows, "hold")
    await asignal(handle, increment)
    assert await aget_state(handle) == {"count": 1}
    # A flow the workers do not know: the caller hears so at once.
    begun = time.monotonic()
    with pytest.raises(FlowNotFound, match=r"NotOnWorkers\.gone"):
        await astart(NotOnWorkers, "gone")
    assert time.monotonic() - begun < 3


async def test_a_raw_signal_naming_an_undeclared_function_is_refused_and_runs_nothing(
    lone: Worker, tmp_path: Path
) -> None:
    # The remote-code gadget: anyone who can write to Redis forges a signal whose
    # function is reached through a flows module's imports. dictConfig(state) with
    # this state would run `touch` on the worker.
    marker = tmp_path / "owned"
    handle = await astart(WorkerFlows, "hold")
    config = {
        "version": 1,
        "handlers": {"x": {"()": "subprocess.call", "args": ["touch", str(marker)]}},
    }
    gadgets = [
        "demo_site.library.flows:logging.config.dictConfig",
        "tests.flowapp.flows:untagged",
        "tests.flowapp.flows:Any",
        "subprocess:call",
    ]
    async with Subscriber() as peer:
        await peer.layer.send(
            lone.channel,
            {
                "type": "caravela.signal",
                "request": uuid.uuid4().hex,
                "reply": peer.channel,
                "flow_id": handle.id,
                "update": config,
            },
        )
        for path in gadgets:
            mark = len(lone.lines)
            request = uuid.uuid4().hex
            forged = {
                "type": "caravela.signal",
                "request": request,
                "reply": peer.channel,
                "flow_id": handle.id,
                "fn": path,
                "args": [],
            }
            await peer.layer.send(lone.channel, forged)
            reply = await peer.wait_for(lambda m, r=request: m.get("request") == r)
            assert (reply["ok"], reply["error"]) == (False, "bad_request"), reply
            logged = rf"WARNING .*refused caravela.signal .*{re.escape(path)}"
            await lone.await_line(logged, 20, mark)
            assert lone.count(re.escape(path)) == 1  # logged once, at WARNING
    assert not marker.exists()
    assert lone.running()
    # The flow itself is untouched by the refusals, and a marked function works.
    await asignal(handle, tag, "ok")
    state = await aget_state(handle)
    assert state["tags"] == ["ok"] and "untagged" not in state


async def test_a_start_delivered_again_after_its_flow_started_is_ignored(lone: Worker) -> None:
    # channels-redis can deliver a message on a named channel twice; play the
    # caller's side of the handshake by hand and deliver the start again.
    async with Subscriber() as peer:
        request, flow_id = uuid.uuid4().hex, uuid.uuid4().hex
        start = {
            "type": "caravela.start",
            "request": request,
            "reply": peer.channel,
            "flow_id": flow_id,
            "flow": WorkerFlows.hold.key,
            "state": {"count": 0},
            "notify": None,
            "expires": time.time() + 30,
        }
        await peer.layer.send(WORKER_CHANNEL, start)
        offer = await peer.wait_for(lambda m: m["type"] == "caravela.offer")
        accept = {"type": "caravela.accept", "request": request, "reply": peer.channel}
        await peer.layer.send(offer["worker"], accept)
        await peer.wait_for(lambda m: m["type"] == "caravela.started")

        await peer.layer.send(WORKER_CHANNEL, start)
        # The worker reads its channel in order: once a later request is answered,
        # and one more round trip made, an answer to the repeat would be in.
        await peer.ask(WORKER_CHANNEL, {**start, "flow_id": uuid.uuid4().hex})
        await peer.hosted(lone)

        answers = [m["type"] for m in peer.messages if m.get("request") == request]
    assert answers == ["caravela.offer", "caravela.started"]
    assert await aget_state(flow_id) == {"count": 0}
