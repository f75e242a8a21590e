"""Worker mode: calls and snapshots of dead flows never hold up those of live flows (DESIGN §9).

Real parts: a private redis-server, two ``runworker`` processes, one of them
killed with SIGKILL so that its flows' calls hang until their timeout (or an
adoption), and for the snapshot test daphne with a real ``websockets``
client. ``tests/benchmarks/bench_storm.py`` prints the same figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from caravela_flow import aget_state, asignal, subscription_url
from tests.flowapp.flows import increment
from tests.worker_support import Daphne, RedisServer, WorkerPool, flows_on, queued, worker_mode

pytestmark = pytest.mark.worker

DEAD = 60
#: A live call answers in milliseconds alone; the dead calls wait REQUEST_TIMEOUT (10 s).
#: The bound is "well before the dead calls' timeout", with slack for a loaded machine
#: (a call queued behind the dead calls' first wait would take about 1 s).
LIVE_BOUND = 0.5
#: Opening a socket (handshake, token, group join, snapshot) alone takes well under 0.2 s;
#: one queued behind the dead subscriptions' first wait would take over 1 s.
SNAPSHOT_BOUND = 0.8


async def test_a_signal_to_a_live_flow_answers_at_once_behind_60_calls_to_dead_flows(
    make_pool: Callable[[], WorkerPool], redis_server: RedisServer
) -> None:
    pool = make_pool()
    victim, survivor = pool.spawn(2)
    with worker_mode(redis_server.url, pool.prefix, REQUEST_TIMEOUT=10):
        dead, live = await flows_on(victim, survivor, DEAD)
        begun = time.monotonic()
        await asignal(live, increment)
        alone = time.monotonic() - begun

        victim.kill()
        never = [uuid.uuid4().hex for _ in range(DEAD)]  # never existed: refused at once
        calls = [asyncio.create_task(asignal(i, increment)) for i in dead]
        unknown = [asyncio.create_task(aget_state(i)) for i in never]
        # Signal the live flow again and again while the dead calls are sent and pending.
        sent = asyncio.create_task(queued(redis_server.url, pool.prefix, victim, DEAD))
        behind: list[float] = []
        while not sent.done() or len(behind) < 10:
            begun = time.monotonic()
            await asignal(live, increment)
            behind.append(time.monotonic() - begun)
        await sent
        still_pending = sum(1 for t in calls if not t.done())
        for task in [*calls, *unknown]:
            task.cancel()
        await asyncio.gather(*calls, *unknown, return_exceptions=True)
        assert (await aget_state(live))["count"] == 1 + len(behind)
    print(
        f"[figure] live signal alone {alone * 1000:.0f} ms; {len(behind)} behind {DEAD} "
        f"dead calls: median {sorted(behind)[len(behind) // 2] * 1000:.0f} ms, "
        f"slowest {max(behind) * 1000:.0f} ms"
    )
    assert still_pending == DEAD
    assert max(behind) < LIVE_BOUND


async def test_a_live_snapshot_over_a_socket_is_not_delayed_by_60_dead_subscriptions(
    make_pool: Callable[[], WorkerPool], redis_server: RedisServer, worker_logs: Path
) -> None:
    websockets = pytest.importorskip("websockets.asyncio.client")
    pool = make_pool()
    victim, survivor = pool.spawn(2)
    daphne = Daphne(redis_server.url, pool.prefix, worker_logs)
    try:
        with worker_mode(redis_server.url, pool.prefix, REQUEST_TIMEOUT=10):
            dead, live = await flows_on(victim, survivor, DEAD)

            async def first_frame(socket: Any) -> dict[str, Any]:
                return dict(json.loads(await asyncio.wait_for(socket.recv(), 20)))

            async def snapshot_time() -> float:
                begun = time.monotonic()
                url = daphne.url(subscription_url(live))
                async with websockets.connect(url, origin=daphne.origin) as socket:
                    assert (await first_frame(socket))["event"] == "snapshot"
                return time.monotonic() - begun

            alone = await snapshot_time()
            victim.kill()
            async with contextlib.AsyncExitStack() as stack:

                async def subscribe(flow_id: str) -> None:
                    url = daphne.url(subscription_url(flow_id))
                    socket = await websockets.connect(url, origin=daphne.origin)
                    stack.push_async_callback(socket.close)

                opening = asyncio.gather(*(subscribe(i) for i in dead))
                # Subscribe to the live flow again and again while the dead ones open
                # and their snapshots are pending.
                sent = asyncio.create_task(queued(redis_server.url, pool.prefix, victim, DEAD))
                behind: list[float] = []
                while not sent.done() or len(behind) < 5:
                    behind.append(await snapshot_time())
                await sent
                await opening
    finally:
        daphne.stop()
    print(
        f"[figure] live snapshot alone {alone * 1000:.0f} ms, "
        f"{len(behind)} behind {DEAD} dead subscriptions: slowest {max(behind) * 1000:.0f} ms"
    )
    assert max(behind) < SNAPSHOT_BOUND
