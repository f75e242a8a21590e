"""Worker mode faults, for real: kill -9, SIGSTOP past the lease, a Redis restart, racing keys.

Each test runs real ``runworker`` processes with a short lease
(``LEASE_SECONDS`` = 2) against a real redis-server, and checks what the
README's *Faults* table promises: a lost worker's flows come back under the same id at
one survivor, a paused host that lost its lease keeps no second copy, flows
are reachable again after Redis restarts empty, and racing keyed starts from
separate processes get one flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from caravela_flow import (
    FlowError,
    NoWorkerAvailable,
    aget_state,
    asignal,
    astart,
    astop,
    subscription_url,
)
from caravela_flow.api import backend
from caravela_flow.groups import flow_group
from tests.flowapp.flows import WorkerFlows, increment
from tests.test_worker_resilience import hosted_ids, start_on_both
from tests.worker_support import (
    ROOT,
    Daphne,
    RedisServer,
    Subscriber,
    WorkerPool,
    bounded,
    unique_prefix,
    worker_env,
    worker_mode,
)

pytestmark = pytest.mark.worker

LEASE = 2.0
LEASE_ENV = {"CARAVELA_FLOW_LEASE_SECONDS": str(LEASE)}
#: Adoption is promised within 2 * LEASE; the rest is slack for a loaded 2-core machine.
ADOPTION_BOUND = 2 * LEASE + 10
#: Sockets are live again within 10 s of Redis answering; slack as above.
RESTART_BOUND = 10 + 10
SOCKETS = 20


def adopted_ids(log_matches: list[Any]) -> list[str]:
    return [m.group(1) for m in log_matches]


async def test_after_kill_9_one_survivor_adopts_each_lost_flow_under_its_id(
    make_pool: Callable[[], WorkerPool], redis_server: RedisServer
) -> None:
    pool = make_pool()
    victim, survivor = pool.spawn(2, **LEASE_ENV)
    with worker_mode(redis_server.url, pool.prefix, LEASE_SECONDS=LEASE, REQUEST_TIMEOUT=20):
        lost, kept = await start_on_both(victim, survivor)
        await asyncio.gather(*(asignal(i, increment) for i in lost | kept))
        async with Subscriber() as subscriber:
            for flow_id in lost:
                await subscriber.join(flow_group(flow_id))

            victim.kill()
            killed = time.monotonic()
            for flow_id in lost:
                announced = await subscriber.wait_for(
                    lambda m, i=flow_id: m["type"] == "flow.state" and m["flow_id"] == i,
                    timeout=ADOPTION_BOUND,
                )
                assert announced["state"]["count"] == 0  # restarted from its start spec
            assert time.monotonic() - killed < ADOPTION_BOUND

        # Each lost flow now lives at the survivor (the hosting pid), once.
        assert lost <= await hosted_ids(survivor)
        adopted = adopted_ids(survivor.matches(r"adopted flow ([0-9a-f]{32})"))
        assert sorted(adopted) == sorted(lost)
        # Calls reach the adopted flows under their ids; kept flows kept their state.
        await asyncio.gather(*(asignal(i, increment) for i in lost))
        assert [(await aget_state(i))["count"] for i in lost] == [1] * len(lost)
        assert [(await aget_state(i))["count"] for i in kept] == [1] * len(kept)
        infos = {info.id: info for info in await backend().aflows()}
        assert all(infos[i].restarts >= 1 for i in lost)
        assert all(infos[i].restarts == 0 for i in kept)


async def test_a_temporary_flow_of_a_killed_worker_ends_with_flow_error(
    make_pool: Callable[[], WorkerPool], redis_server: RedisServer
) -> None:
    pool = make_pool()
    victim, _ = pool.spawn(2, **LEASE_ENV)
    with worker_mode(redis_server.url, pool.prefix, LEASE_SECONDS=LEASE):
        for _ in range(20):
            handle = await astart(WorkerFlows, "hold_temporary")
            if handle.id in await hosted_ids(victim):
                break
        else:
            raise AssertionError("20 starts all went to the survivor")
        async with Subscriber() as subscriber:
            await subscriber.join(flow_group(handle.id))
            victim.kill()
            ended = await subscriber.wait_for(
                lambda m: m["flow_id"] == handle.id and m["type"] != "flow.state",
                timeout=ADOPTION_BOUND,
            )
        assert ended["type"] == "flow.error"
        assert "worker lost" in ended["reason"]


async def test_a_host_paused_past_its_lease_keeps_no_second_copy(
    make_pool: Callable[[], WorkerPool], redis_server: RedisServer
) -> None:
    pool = make_pool()
    paused, survivor = pool.spawn(2, **LEASE_ENV)
    with worker_mode(redis_server.url, pool.prefix, LEASE_SECONDS=LEASE, REQUEST_TIMEOUT=20):
        lost, _ = await start_on_both(paused, survivor)
        async with Subscriber() as subscriber:
            for flow_id in lost:
                await subscriber.join(flow_group(flow_id))
            paused.send_signal(signal.SIGSTOP)
            try:
                for flow_id in lost:
                    await survivor.await_line(f"adopted flow {flow_id}", ADOPTION_BOUND)
            finally:
                paused.send_signal(signal.SIGCONT)
            await paused.await_line("adopted elsewhere; stopped here", ADOPTION_BOUND)

            # The resumed host sent nothing for the flows it lost: every message
            # since the adoption comes from the adopted copy (versions from 1 << 32).
            await asyncio.gather(*(asignal(i, increment) for i in lost))
            assert [(await aget_state(i))["count"] for i in lost] == [1] * len(lost)
            for flow_id in lost:
                await subscriber.wait_for(
                    lambda m, i=flow_id: m["flow_id"] == i and m.get("state", {}).get("count") == 1
                )
            for message in subscriber.messages:
                if message.get("flow_id") in lost:
                    assert message["version"] >= 1 << 32, message
        assert not lost & await hosted_ids(paused)
        assert lost <= await hosted_ids(survivor)


async def test_after_redis_restarts_empty_every_flow_and_open_socket_is_live_again(
    worker_logs: Path,
) -> None:
    websockets = pytest.importorskip("websockets.asyncio.client")
    server = RedisServer(worker_logs)
    prefix = unique_prefix("redis-restart")
    pool = WorkerPool(server.url, prefix, worker_logs)
    daphne = Daphne(server.url, prefix, worker_logs, **LEASE_ENV)
    try:
        pool.spawn(2, **LEASE_ENV)
        with worker_mode(
            server.url, prefix, LEASE_SECONDS=LEASE, START_TIMEOUT=3, REQUEST_TIMEOUT=20
        ):
            handles = await bounded([lambda: astart(WorkerFlows, "hold")] * 100, 20)
            await bounded([lambda h=h: asignal(h, increment) for h in handles], 20)
            watched = handles[:SOCKETS]
            async with contextlib.AsyncExitStack() as sockets:
                opened = [
                    await sockets.enter_async_context(
                        websockets.connect(daphne.url(subscription_url(h)), origin=daphne.origin)
                    )
                    for h in watched
                ]
                for socket in opened:
                    first = json.loads(await asyncio.wait_for(socket.recv(), 20))
                    assert (first["event"], first["state"]["count"]) == ("snapshot", 1)

                # Signals keep flowing to some flows through the outage.
                flowing = handles[SOCKETS : SOCKETS + 10]
                outcomes: dict[str, list[bool]] = {h.id: [] for h in flowing}
                restarted, done = asyncio.Event(), asyncio.Event()
                resumed = {h.id: asyncio.Event() for h in flowing}

                async def keep_signalling(handle: Any) -> None:
                    while not done.is_set():
                        try:
                            await asignal(handle, increment)
                        except FlowError:
                            outcomes[handle.id].append(False)
                            await asyncio.sleep(0.05)  # pacing the retries, not waiting for one
                        else:
                            outcomes[handle.id].append(True)
                            if restarted.is_set():
                                resumed[handle.id].set()

                signalling = [asyncio.create_task(keep_signalling(h)) for h in flowing]
                server.stop()
                # While Redis is down, every call fails with a FlowError within its timeout.
                quiet = handles[-1]

                async def fails_in_time(call: Callable[[], Any]) -> BaseException:
                    began = time.monotonic()
                    with pytest.raises(FlowError) as raised:
                        await call()
                    assert time.monotonic() - began < 20 + 10  # REQUEST_TIMEOUT, and slack
                    return raised.value

                failures = await asyncio.gather(
                    fails_in_time(lambda: astart(WorkerFlows, "hold")),
                    fails_in_time(lambda: aget_state(quiet)),
                    fails_in_time(lambda: asignal(quiet, increment)),
                )
                assert isinstance(failures[0], NoWorkerAvailable)
                server = RedisServer(worker_logs, port=server.port)
                back = time.monotonic()
                restarted.set()

                steady = [h for h in handles if h not in flowing]
                states = await bounded([lambda h=h: aget_state(h) for h in steady], 20)
                assert [s["count"] for s in states] == [1] * len(steady)  # the same runs
                # The flowing signals resume; none that succeeded was lost.
                await asyncio.wait_for(
                    asyncio.gather(*(resumed[h.id].wait() for h in flowing)), RESTART_BOUND
                )
                done.set()
                await asyncio.gather(*signalling)
                for handle in flowing:
                    count = (await aget_state(handle))["count"]
                    succeeded, failed = (
                        outcomes[handle.id].count(True),
                        outcomes[handle.id].count(False),
                    )
                    assert 1 + succeeded <= count <= 1 + succeeded + failed, (
                        count,
                        succeeded,
                        failed,
                    )
                await bounded([lambda h=h: asignal(h, increment) for h in handles], 20)

                async def latest(socket: Any) -> None:
                    while True:
                        event = json.loads(await socket.recv())
                        if event.get("state", {}).get("count") == 2:
                            return

                await asyncio.wait_for(asyncio.gather(*(latest(s) for s in opened)), RESTART_BOUND)
                assert time.monotonic() - back < RESTART_BOUND
            fresh = await astart(WorkerFlows, "hold")
            assert (await aget_state(fresh))["count"] == 0
            await bounded([lambda h=h: astop(h) for h in [*handles, fresh]], 20)
    finally:
        daphne.stop()
        pool.close()
        server.stop()


async def test_a_socket_on_a_flow_whose_worker_is_lost_for_good_is_closed_to_retry(
    make_pool: Callable[[], WorkerPool], redis_server: RedisServer, worker_logs: Path
) -> None:
    websockets = pytest.importorskip("websockets.asyncio.client")
    ConnectionClosed = pytest.importorskip("websockets.exceptions").ConnectionClosed
    pool = make_pool()
    [only] = pool.spawn(1, **LEASE_ENV)
    daphne = Daphne(redis_server.url, pool.prefix, worker_logs, **LEASE_ENV)
    try:
        with worker_mode(redis_server.url, pool.prefix, LEASE_SECONDS=LEASE):
            handle = await astart(WorkerFlows, "hold")
            url = daphne.url(subscription_url(handle))
            async with websockets.connect(url, origin=daphne.origin) as socket:
                assert json.loads(await asyncio.wait_for(socket.recv(), 20))["event"] == "snapshot"
                only.kill()
                killed = time.monotonic()
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(socket.recv(), 10 + ADOPTION_BOUND)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4500
            assert time.monotonic() - killed < 10 + ADOPTION_BOUND
    finally:
        daphne.stop()


RACER = """
import json, sys, django
django.setup()
from caravela_flow import start
from tests.flowapp.flows import WorkerFlows
sys.stdin.readline()  # every racer starts at once
print(json.dumps(start(WorkerFlows, "hold", key="book:1").id), flush=True)
"""


async def test_keyed_starts_racing_from_separate_processes_get_one_flow(
    make_pool: Callable[[], WorkerPool], redis_server: RedisServer
) -> None:
    pool = make_pool()
    pool.spawn(2)
    env = worker_env(redis_server.url, pool.prefix)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        ids = [json.loads((await asyncio.to_thread(r.communicate, timeout=60))[0]) for r in racers]
    finally:
        for racer in racers:
            racer.kill()
    assert len(set(ids)) == 1, ids
    with worker_mode(redis_server.url, pool.prefix):
        again = await astart(WorkerFlows, "hold", key="book:1")
        assert again.id == ids[0] and again.key == "book:1"
        other = await astart(WorkerFlows, "hold", key="book:2")
        assert other.id != again.id
        await astop(again)
        with pytest.raises(FlowError):
            await asignal(again, increment)  # it has ended
        after = await astart(WorkerFlows, "hold", key="book:1")
        assert after.id != again.id
