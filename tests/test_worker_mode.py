"""Worker mode across processes: a private redis-server and two real ``runworker`` processes.

This process is the caller (as a web process would be); the flows run in the
workers. The workers are shared by the module; each test uses ids of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from caravela_flow import (
    FlowNotFound,
    aget_state,
    asignal,
    astart,
    astop,
    get_state,
    remote,
    signal,
    start,
    stop,
    subscription_url,
)
from caravela_flow.api import backend
from caravela_flow.checks import check_settings
from caravela_flow.errors import FlowUnreachable
from caravela_flow.groups import flow_group
from caravela_flow.supervisor import supervisor
from tests.flowapp.flows import WorkerFlows, finish, increment, put
from tests.worker_support import (
    Daphne,
    RedisServer,
    Subscriber,
    WorkerPool,
    bounded,
    layer_config,
    unique_prefix,
    worker_mode,
)

pytestmark = pytest.mark.worker

#: Signals of the exactly-once test (spread over FLOWS flows) and of the flood tests
#: (ten times a channel's capacity). Raise them through the environment for a
#: longer stress run; these keep the module near a minute on a busy 2-core machine.
SIGNALS = int(os.environ.get("CARAVELA_FLOW_TEST_SIGNALS", "2000"))
FLOWS = 200
FLOOD = int(os.environ.get("CARAVELA_FLOW_TEST_FLOOD", "1000"))
#: Calls in flight at once in the load tests.
IN_FLIGHT = 100


@pytest.fixture(scope="module")
def workers(redis_server: RedisServer, worker_logs: Path) -> Iterator[WorkerPool]:
    with WorkerPool(redis_server.url, unique_prefix("worker-mode"), worker_logs) as pool:
        pool.spawn(2)
        yield pool


@pytest.fixture
def caller(redis_server: RedisServer, workers: WorkerPool) -> Iterator[WorkerPool]:
    """This process in worker mode against the module's workers."""
    with worker_mode(redis_server.url, workers.prefix):
        yield workers


def figure(text: str) -> None:
    """Report a measurement (shown with ``pytest -s`` or ``-rP``)."""
    print(f"[figure] {text}")


def final(message: dict[str, Any]) -> bool:
    return message["type"] in ("flow.done", "flow.error", "flow.stopped")


# -- the calls, across processes ------------------------------------------------


def test_start_signal_get_state_and_stop_reach_a_runner_in_a_worker(caller: WorkerPool) -> None:
    handle = start(WorkerFlows, "hold", {"label": "a"})

    assert handle.flow == "tests.flowapp.flows.WorkerFlows.hold"
    assert handle.id not in supervisor  # not hosted by this process, but by one worker:
    assert [(i.flow, i.status) for i in backend().flows() if i.id == handle.id] == [
        (handle.flow, "running")
    ]
    assert get_state(handle) == {"count": 0, "label": "a"}

    signal(handle, {"label": "b"})
    signal(handle, increment)
    signal(handle.id, increment, "count", 5)
    signal(handle, put, "items", [1, "two", {"three": 3}])

    assert get_state(handle.id) == {"count": 6, "label": "b", "items": [1, "two", {"three": 3}]}
    stop(handle)
    with pytest.raises(FlowNotFound):
        signal(handle, increment)
    # Stopped, but retained: its final state is still readable.
    assert get_state(handle)["count"] == 6


async def test_the_async_calls_and_the_flow_group_across_processes(caller: WorkerPool) -> None:
    handle = await astart(WorkerFlows, "hold")
    async with Subscriber() as subscriber:
        await subscriber.join(flow_group(handle.id))
        await asignal(handle, increment, "count", 2)
        state = await subscriber.wait_for(lambda m: m["type"] == "flow.state")
        assert state["state"] == {"count": 2}
        assert await aget_state(handle) == {"count": 2}

        await astop(handle)

        stopped = await subscriber.wait_for(final)
        assert stopped["type"] == "flow.stopped"
        assert stopped["state"] == {"count": 2}
        assert stopped["version"] > state["version"]
        snapshot = await backend().asnapshot(handle.id)
        assert (snapshot.status, snapshot.version) == ("stopped", stopped["version"])


async def test_a_finished_flow_is_retained_and_refuses_signal_and_stop(caller: WorkerPool) -> None:
    async with Subscriber() as subscriber:
        sink = f"test-sink.{uuid.uuid4().hex}"
        await subscriber.join(sink)
        handle = await astart(WorkerFlows, "quick", notify=sink)
        done = await subscriber.wait_for(final)

    assert done["type"] == "flow.done"
    assert await aget_state(handle) == {"ran": True}
    begun = time.monotonic()
    for call in (asignal(handle, {"late": True}), astop(handle)):
        with pytest.raises(FlowNotFound, match="not running") as raised:
            await call
        # The worker answered (a FlowUnreachable would mean nobody did).
        assert not isinstance(raised.value, FlowUnreachable)
    assert time.monotonic() - begun < 5
    assert await aget_state(handle) == {"ran": True}


async def test_an_unknown_id_is_flow_not_found_within_the_request_timeout(
    caller: WorkerPool,
) -> None:
    unknown = uuid.uuid4().hex
    calls = [aget_state(unknown), asignal(unknown, {"a": 1}), astop(unknown)]
    with override_settings(CARAVELA_FLOW={"MODE": "worker", "REQUEST_TIMEOUT": 2}):
        begun = time.monotonic()
        results = await asyncio.gather(*calls, return_exceptions=True)
        elapsed = time.monotonic() - begun

    for result in results:
        assert isinstance(result, FlowUnreachable), result
        assert isinstance(result, FlowNotFound)
        assert unknown in str(result)
    assert 2 <= elapsed < 6, elapsed


def test_a_lambda_or_closure_signal_is_refused_before_anything_is_sent(
    caller: WorkerPool,
) -> None:
    def closure(state: dict) -> dict:
        return state

    remote.reset_client()
    handle = uuid.uuid4().hex  # nothing answers this id: a sent request would wait
    begun = time.monotonic()
    with pytest.raises(TypeError, match="lambda or a closure"):
        signal(handle, lambda state: state)
    with pytest.raises(TypeError, match="lambda or a closure"):
        signal(handle, closure)
    with pytest.raises(TypeError, match="installed app"):
        signal(handle, figure_signal)
    assert time.monotonic() - begun < 0.5
    assert not remote._clients  # no client was even made, so nothing was sent


def figure_signal(state: dict) -> dict:
    """A module-level function, but of a module that is not an installed app."""
    return state


# -- where starts go ---------------------------------------------------------------


async def test_starts_spread_over_both_workers(caller: WorkerPool) -> None:
    handles = [await astart(WorkerFlows, "hold") for _ in range(40)]
    ids = {h.id for h in handles}

    async with Subscriber() as subscriber:
        hosted = [{f["id"] for f in await subscriber.hosted(w)} & ids for w in caller.workers]
    figure(f"40 sequential starts: {[len(h) for h in hosted]} per worker")
    assert all(hosted), "every worker hosts some of the flows"
    assert hosted[0].isdisjoint(hosted[1])
    assert hosted[0] | hosted[1] == ids


async def test_each_of_200_concurrent_starts_runs_on_exactly_one_worker(
    caller: WorkerPool,
) -> None:
    begun = time.monotonic()
    handles = await asyncio.gather(*(astart(WorkerFlows, "hold") for _ in range(200)))
    figure(f"200 concurrent starts over 2 workers: {time.monotonic() - begun:.2f} s")
    ids = [h.id for h in handles]
    assert len(set(ids)) == 200

    # The public listing asks every worker: a flow started twice would be listed twice.
    listed = [info for info in await backend().aflows() if info.id in set(ids)]
    assert sorted(info.id for info in listed) == sorted(ids)
    assert {(info.status, info.flow) for info in listed} == {("running", handles[0].flow)}
    async with Subscriber() as subscriber:
        hosted = [
            [f["id"] for f in await subscriber.hosted(w) if f["id"] in set(ids)]
            for w in caller.workers
        ]
    assert sorted(hosted[0] + hosted[1]) == sorted(ids)
    figure(f"200 concurrent starts: {[len(h) for h in hosted]} per worker")


# -- load ------------------------------------------------------------------------


async def test_thousands_of_concurrent_signals_each_apply_exactly_once(
    caller: WorkerPool,
) -> None:
    handles = await asyncio.gather(*(astart(WorkerFlows, "hold") for _ in range(FLOWS)))
    # Half the signals increment a counter (a function travelling by import path),
    # half set a key of their own (a dict).
    calls: list[Any] = []
    for n in range(SIGNALS):
        handle = handles[n % FLOWS]
        if n % 2:
            calls.append(lambda h=handle: asignal(h, increment))
        else:
            calls.append(lambda h=handle, n=n: asignal(h, {f"k{n}": n}))
    begun = time.monotonic()
    await bounded(calls, IN_FLIGHT)  # none may raise
    elapsed = time.monotonic() - begun
    figure(
        f"{SIGNALS} signals to {FLOWS} flows, {IN_FLIGHT} in flight: {elapsed:.1f} s, "
        f"{SIGNALS / elapsed:.0f}/s; client latency {remote.client().latency * 1000:.0f} ms"
    )

    states = await asyncio.gather(*(aget_state(h) for h in handles))
    for index, state in enumerate(states):
        mine = range(index, SIGNALS, FLOWS)
        assert state["count"] == sum(1 for n in mine if n % 2)
        assert {k: v for k, v in state.items() if k != "count"} == {
            f"k{n}": n for n in mine if not n % 2
        }


def check_versions(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Check a flow's messages as received on the layer; returns the last one.

    Echoes repeat a message, and an echo may arrive after a newer message:
    so every version must always carry the same message, and in version
    order the counter never goes down and the final message comes last.
    """
    by_version: dict[int, dict[str, Any]] = {}
    for message in messages:
        assert by_version.setdefault(message["version"], message) == message
    ordered = [by_version[v] for v in sorted(by_version)]
    counts = [m["state"]["count"] for m in ordered if "state" in m]
    assert counts == sorted(counts)
    assert [final(m) for m in ordered].count(True) == 1
    assert final(ordered[-1])
    return ordered[-1]


@pytest.mark.parametrize("lag", [0.0, 2.0], ids=["reads-at-once", "still-full-2s-later"])
async def test_a_flooded_flow_s_subscriber_ends_with_the_latest_state_and_done(
    caller: WorkerPool, lag: float
) -> None:
    handle = await astart(WorkerFlows, "hold")
    async with Subscriber() as subscriber:
        await subscriber.join(flow_group(handle.id))
        # A subscriber too slow for the burst: its channel fills up and the layer
        # skips it for most of the burst's messages.
        await subscriber.pause()
        begun = time.monotonic()
        await bounded([lambda: asignal(handle, increment)] * FLOOD, IN_FLIGHT)
        figure(f"{FLOOD} signals to one flow: {time.monotonic() - begun:.1f} s")
        # A subscriber on a loaded machine may still be full well after the burst
        # (with one echo 0.25 s after the last state, it missed that state for good).
        await asyncio.sleep(lag)
        subscriber.resume()

        # It missed states, but the latest one reaches it while the flow still runs.
        await subscriber.wait_for(lambda m: m.get("state", {}).get("count") == FLOOD)
        await asignal(handle, finish)
        await subscriber.wait_for(final)
        messages = [m for m in subscriber.messages if m["flow_id"] == handle.id]

    last = check_versions(messages)
    assert last["type"] == "flow.done"
    assert last["state"] == {"count": FLOOD, "finish": True, "ran": True}
    figure(
        f"flood subscriber got {len(messages)} messages for {FLOOD} changes "
        f"({len({m['version'] for m in messages})} distinct versions)"
    )


async def test_a_websocket_subscriber_through_daphne_follows_a_flooded_flow(
    caller: WorkerPool, redis_server: RedisServer, worker_logs: Path
) -> None:
    websockets = pytest.importorskip("websockets.asyncio.client")
    handle = await astart(WorkerFlows, "hold")
    daphne = Daphne(redis_server.url, caller.prefix, worker_logs)
    events: list[dict[str, Any]] = []
    try:
        url = daphne.url(subscription_url(handle))
        async with websockets.connect(url, origin=daphne.origin) as socket:
            events.append(json.loads(await asyncio.wait_for(socket.recv(), 20)))
            assert events[0]["event"] == "snapshot"
            assert (events[0]["status"], events[0]["state"]) == ("running", {"count": 0})

            async def read() -> None:
                async for frame in socket:
                    events.append(json.loads(frame))

            reader = asyncio.create_task(read())
            await bounded([lambda: asignal(handle, increment)] * FLOOD, IN_FLIGHT)
            await asignal(handle, finish)
            await asyncio.wait_for(reader, 30)  # the server closes after the final event
    finally:
        daphne.stop()

    versions = [e["version"] for e in events]
    assert versions == sorted(set(versions)), "versions only increase"
    assert events[-1]["event"] == "done"
    assert events[-1]["state"] == {"count": FLOOD, "finish": True, "ran": True}
    counts = [e["state"]["count"] for e in events if "state" in e]
    assert counts == sorted(counts)
    assert FLOOD in counts
    figure(f"WebSocket subscriber got {len(events)} events for {FLOOD + 2} changes")


# -- system checks ------------------------------------------------------------------


def check_ids() -> list[str]:
    return [message.id for message in check_settings()]


def test_check_accepts_worker_mode_on_redis_with_the_worker_channel_routed() -> None:
    layers = layer_config("redis://127.0.0.1:1/0", "unused")
    with override_settings(CARAVELA_FLOW={"MODE": "worker"}, CHANNEL_LAYERS=layers):
        assert check_ids() == []


def test_check_refuses_worker_mode_on_the_in_memory_layer() -> None:
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CARAVELA_FLOW={"MODE": "worker"}, CHANNEL_LAYERS=layers):
        assert "caravela_flow.E005" in check_ids()


def test_check_refuses_worker_mode_when_the_worker_channel_is_not_routed() -> None:
    layers = layer_config("redis://127.0.0.1:1/0", "unused")
    with override_settings(
        CARAVELA_FLOW={"MODE": "worker"},
        CHANNEL_LAYERS=layers,
        ASGI_APPLICATION="tests.flowapp.asgi_unrouted.application",
    ):
        messages = check_settings()
    assert [m.id for m in messages] == ["caravela_flow.E007"]
    assert "caravela-flows" in messages[0].msg
