"""The runtime calls in local mode: argument checks, state merging and copies, and
which event loop a flow lands on for each kind of caller."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import HttpCommunicator
from django.contrib.auth.models import User
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

import caravela_flow
from caravela_flow import (
    FlowError,
    FlowHandle,
    FlowNotFound,
    Flows,
    Ok,
    aget_state,
    asignal,
    astart,
    astop,
    flow,
    get_state,
    run,
    signal,
    start,
    stop,
    wait_until,
)
from caravela_flow.loops import background_loop
from caravela_flow.supervisor import supervisor
from caravela_flow.testing import FlowProbe, start_probe

from .urls_sync_view import ViewFlows


def is_done(state: dict) -> bool:
    return bool(state.get("done"))


def add(state: dict, k: int = 1) -> dict:
    return {**state, "n": state["n"] + k}


def append(state: dict, item: Any) -> dict:
    return {**state, "items": [*state["items"], item]}


class ApiFlows(Flows):
    idle = flow(
        wait_until(is_done),
        initial_state={"n": 0, "done": False, "items": [], "nested": {"x": 1, "y": 2}},
    )


class NotFlows:
    idle = ApiFlows.idle


UNKNOWN_ID = "0" * 32


def loop_of(handle: FlowHandle | str) -> asyncio.AbstractEventLoop:
    return supervisor.get(str(handle)).loop


@pytest.fixture
def handle() -> Iterator[FlowHandle]:
    """An idle flow on the background loop, stopped afterwards."""
    h = start(ApiFlows, "idle")
    yield h
    with contextlib.suppress(FlowNotFound):
        stop(h)


def flows_snapshot() -> tuple[int, set[str]]:
    """How many flows this process hosts, and their ids.

    Counted as running + retained: a flow of another test that ends meanwhile
    moves from one to the other but leaves the total alone.
    """
    stats = supervisor.statistics()
    return stats.running + stats.retained, {info.id for info in supervisor.flows()}


# -- start: bad arguments ---------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [NotFlows, ApiFlows(), "tests.test_api_local.ApiFlows", None, ApiFlows.idle, Flows()],
    ids=["plain-class", "instance", "string", "none", "definition", "base-instance"],
)
def test_start_refuses_what_is_not_a_flows_class(bad: Any) -> None:
    before = flows_snapshot()
    with pytest.raises(TypeError, match=r"takes a Flows subclass first") as info:
        start(bad, "idle")
    assert isinstance(info.value, FlowError)
    assert flows_snapshot() == before


async def test_astart_refuses_what_is_not_a_flows_class() -> None:
    with pytest.raises(TypeError, match=r"takes a Flows subclass first"):
        await astart(NotFlows, "idle")  # type: ignore[arg-type]


def test_start_unknown_flow_names_the_known_ones() -> None:
    before = flows_snapshot()
    with pytest.raises(FlowNotFound, match=r"ApiFlows has no flow 'idel'; its flows: idle"):
        start(ApiFlows, "idel")
    with pytest.raises(FlowNotFound, match=r"must be a str, got 3"):
        start(ApiFlows, 3)  # type: ignore[arg-type]
    assert flows_snapshot() == before


async def test_astart_unknown_flow() -> None:
    with pytest.raises(FlowNotFound, match=r"its flows: idle"):
        await astart(ApiFlows, "nope")


@pytest.mark.parametrize("bad", [[("n", 1)], "n=1", 5, (("n", 1),)])
def test_start_refuses_a_non_dict_initial_state(bad: Any) -> None:
    before = flows_snapshot()
    with pytest.raises(TypeError, match=r"^initial_state must be a dict or None, got"):
        start(ApiFlows, "idle", bad)
    assert flows_snapshot() == before


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"user": User(username="ann")}, r"initial_state\['user'\] is a django\.contrib"),
        ({"n": float("nan")}, r"initial_state\['n'\] is nan"),
        ({"when": dt.time(9, tzinfo=dt.UTC)}, r"initial_state\['when'\] is a timezone-aware"),
        ({"nested": {"s": {1}}}, r"initial_state\['nested'\]\['s'\] is a builtins\.set"),
        ({"nested": {2: "x"}}, r"initial_state\['nested'\] has a non-string key 2"),
    ],
    ids=["model", "nan", "aware-time", "set", "int-key"],
)
def test_a_state_that_cannot_travel_is_refused_at_start(bad: dict, message: str) -> None:
    before = flows_snapshot()
    with pytest.raises(caravela_flow.FlowError, match=message):
        start(ApiFlows, "idle", bad)
    # Nothing half-started is left behind.
    assert flows_snapshot() == before


async def test_astart_refuses_a_state_that_cannot_travel() -> None:
    before = flows_snapshot()
    with pytest.raises(TypeError, match=r"initial_state\['user'\]"):
        await astart(ApiFlows, "idle", {"user": User()})
    assert flows_snapshot() == before


@pytest.mark.parametrize("bad", [5, object(), ["group"], b"group"], ids=["int", "obj", "list", "b"])
def test_start_refuses_a_notify_of_a_wrong_type(bad: Any) -> None:
    before = flows_snapshot()
    with pytest.raises(TypeError, match=r"notify must be a group name, a callable or an asyncio"):
        start(ApiFlows, "idle", notify=bad)
    assert flows_snapshot() == before


@pytest.mark.parametrize("bad", ["", "has space", "x" * 100, "ünïcode", "a/b", "semi;colon"])
def test_start_refuses_an_invalid_group_name(bad: str) -> None:
    before = flows_snapshot()
    with pytest.raises(ValueError, match=r"is not a valid Channels group name"):
        start(ApiFlows, "idle", notify=bad)
    assert flows_snapshot() == before


# -- start: state merging --------------------------------------------------------


def test_initial_state_is_merged_shallowly_over_the_declared_one() -> None:
    h = start(ApiFlows, "idle", {"nested": {"x": 9}, "extra": "yes"})
    try:
        assert get_state(h) == {
            "n": 0,
            "done": False,
            "items": [],
            "nested": {"x": 9},  # replaced, not merged
            "extra": "yes",
        }
    finally:
        stop(h)
    # The declared state is untouched.
    assert ApiFlows.idle.initial_state["nested"] == {"x": 1, "y": 2}


@pytest.mark.parametrize("given", [None, {}])
def test_no_initial_state_means_the_declared_one(given: Any) -> None:
    h = start(ApiFlows, "idle", given)
    try:
        assert get_state(h) == ApiFlows.idle.initial_state
    finally:
        stop(h)


def test_the_callers_dict_is_copied_at_start() -> None:
    given: dict[str, Any] = {"items": ["a"], "nested": {"x": 5}}
    h = start(ApiFlows, "idle", given)
    try:
        given["items"].append("b")
        given["nested"]["x"] = 6
        given["n"] = 100
        state = get_state(h)
        assert state["items"] == ["a"]
        assert state["nested"] == {"x": 5}
        assert state["n"] == 0
    finally:
        stop(h)


def test_get_state_returns_a_copy(handle: FlowHandle) -> None:
    state = get_state(handle)
    state["items"].append("mutated")
    state["nested"]["x"] = "mutated"
    state["n"] = 42
    fresh = get_state(handle)
    assert fresh["items"] == []
    assert fresh["nested"] == {"x": 1, "y": 2}
    assert fresh["n"] == 0
    assert get_state(handle) is not get_state(handle)


async def test_aget_state_returns_a_copy() -> None:
    h = await astart(ApiFlows, "idle")
    state = await aget_state(h)
    state["nested"]["x"] = "mutated"
    assert (await aget_state(h))["nested"]["x"] == 1
    await astop(h)


def test_dict_signal_merges_shallowly_and_is_copied(handle: FlowHandle) -> None:
    update: dict[str, Any] = {"nested": {"z": 3}, "items": [1]}
    signal(handle, update)
    update["items"].append(2)
    assert get_state(handle)["nested"] == {"z": 3}
    assert get_state(handle)["items"] == [1]
    assert get_state(handle)["n"] == 0


# -- signal, get_state, stop: bad arguments --------------------------------------


@pytest.mark.parametrize("bad", [5, "done", [("done", True)], None, ("done", True)])
def test_signal_refuses_a_non_dict_non_callable(handle: FlowHandle, bad: Any) -> None:
    with pytest.raises(TypeError, match=r"update must be a dict or a callable fn\(state, \*args\)"):
        signal(handle, bad)
    assert get_state(handle)["done"] is False


async def test_asignal_refuses_a_non_dict_non_callable() -> None:
    h = await astart(ApiFlows, "idle")
    with pytest.raises(TypeError, match=r"update must be a dict or a callable"):
        await asignal(h, 5)
    await astop(h)


def test_signal_refuses_a_dict_update_with_extra_args(handle: FlowHandle) -> None:
    with pytest.raises(TypeError, match=r"extra args only go with a callable update"):
        signal(handle, {"n": 1}, 2)
    assert get_state(handle)["n"] == 0


def test_signal_refuses_a_dict_that_cannot_travel(handle: FlowHandle) -> None:
    with pytest.raises(TypeError, match=r"signal update\['who'\] is a django\.contrib"):
        signal(handle, {"who": User()})
    assert "who" not in get_state(handle)


def test_signal_with_a_callable_and_args(handle: FlowHandle) -> None:
    signal(handle, add, 5)
    signal(handle, add)
    assert get_state(handle)["n"] == 6


@pytest.mark.parametrize("call", ["signal", "get_state", "stop"])
@pytest.mark.parametrize("flow_id", [UNKNOWN_ID, uuid.uuid4().hex, "not-a-flow-id", ""])
def test_unknown_ids_raise_flow_not_found(call: str, flow_id: str) -> None:
    fn: Callable[..., Any] = getattr(caravela_flow, call)
    args = ({"done": True},) if call == "signal" else ()
    with pytest.raises(FlowNotFound):
        fn(flow_id, *args)
    with pytest.raises(FlowNotFound):
        fn(FlowHandle(flow_id, ApiFlows.idle.key), *args)


@pytest.mark.parametrize("call", ["asignal", "aget_state", "astop"])
async def test_async_twins_raise_flow_not_found(call: str) -> None:
    fn: Callable[..., Any] = getattr(caravela_flow, call)
    args = ({"done": True},) if call == "asignal" else ()
    with pytest.raises(FlowNotFound):
        await fn(UNKNOWN_ID, *args)
    with pytest.raises(FlowNotFound):
        await fn(FlowHandle(UNKNOWN_ID), *args)


@pytest.mark.parametrize("call", ["signal", "get_state", "stop"])
@pytest.mark.parametrize("bad", [42, None, uuid.UUID(int=1), b"0" * 32, {"id": UNKNOWN_ID}])
def test_a_handle_of_a_wrong_type_is_refused(call: str, bad: Any) -> None:
    fn: Callable[..., Any] = getattr(caravela_flow, call)
    args = ({"done": True},) if call == "signal" else ()
    with pytest.raises(TypeError, match=r"expected a FlowHandle or a flow id string") as info:
        fn(bad, *args)
    assert isinstance(info.value, FlowError)


@pytest.mark.parametrize("call", ["asignal", "aget_state", "astop"])
async def test_async_twins_refuse_a_handle_of_a_wrong_type(call: str) -> None:
    fn: Callable[..., Any] = getattr(caravela_flow, call)
    args = ({"done": True},) if call == "asignal" else ()
    with pytest.raises(TypeError, match=r"expected a FlowHandle or a flow id string"):
        await fn(1234, *args)


def test_the_id_string_works_like_the_handle(handle: FlowHandle) -> None:
    signal(handle.id, {"n": 7})
    assert get_state(handle.id) == get_state(handle)
    assert get_state(str(handle))["n"] == 7
    stop(handle.id)
    with pytest.raises(FlowNotFound, match="not running"):
        signal(handle, {"n": 8})


def test_finished_flows_refuse_signal_and_stop_but_keep_their_state() -> None:
    probe = start_probe(ApiFlows, "idle", {"n": 1})
    assert probe.handle is not None
    signal(probe.handle, {"done": True})
    assert probe.wait_end(timeout=5)["type"] == "flow.done"
    assert get_state(probe.handle)["n"] == 1
    assert get_state(probe.handle)["done"] is True
    with pytest.raises(FlowNotFound, match="not running"):
        signal(probe.handle, {"n": 2})
    with pytest.raises(FlowNotFound, match="not running"):
        stop(probe.handle)


def test_stop_ends_the_flow_with_flow_stopped() -> None:
    probe = start_probe(ApiFlows, "idle", {"n": 3})
    assert probe.handle is not None
    stop(probe.handle)
    final = probe.wait_end(timeout=5)
    assert final["type"] == "flow.stopped"
    assert final["state"]["n"] == 3
    assert get_state(probe.handle)["n"] == 3


# -- notify sinks ----------------------------------------------------------------


async def test_notify_callable_queue_and_group() -> None:
    received: list[dict] = []
    async_received: list[dict] = []
    ended, async_ended = asyncio.Event(), asyncio.Event()
    queue: asyncio.Queue[dict] = asyncio.Queue()
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("api-test.watchers", channel)

    def sink(message: dict) -> None:
        received.append(message)
        if message["type"] == "flow.done":
            ended.set()

    async def async_sink(message: dict) -> None:
        async_received.append(message)
        if message["type"] == "flow.done":
            async_ended.set()

    h1 = await astart(ApiFlows, "idle", notify=sink)
    h2 = await astart(ApiFlows, "idle", notify=queue)
    h3 = await astart(ApiFlows, "idle", notify="api-test.watchers")
    h4 = await astart(ApiFlows, "idle", notify=async_sink)
    for h in (h1, h2, h3, h4):
        await asignal(h, {"done": True})
    async with asyncio.timeout(5):
        await ended.wait()
        await async_ended.wait()
        first, last = await queue.get(), await queue.get()
        via_group = [await layer.receive(channel)]
        while via_group[-1]["type"] != "flow.done":
            via_group.append(await layer.receive(channel))

    expected_state = {**ApiFlows.idle.initial_state, "done": True}

    def expected(flow_id: str) -> list[dict]:
        return [
            {"type": "flow.state", "flow_id": flow_id, "version": 1, "state": expected_state},
            {"type": "flow.done", "flow_id": flow_id, "version": 2, "state": expected_state},
        ]

    # Local sinks get every message.
    assert received == expected(h1.id)
    assert [first, last] == expected(h2.id)
    assert async_received == expected(h4.id)
    # A group may miss a flow.state that a newer message supersedes, never the last one.
    assert via_group[-1] == expected(h3.id)[-1]
    assert via_group[:-1] in ([], expected(h3.id)[:1])


# -- which loop a flow lands on ----------------------------------------------------


async def test_async_callers_run_flows_on_their_own_loop() -> None:
    h = await astart(ApiFlows, "idle")
    assert loop_of(h) is asyncio.get_running_loop()
    await asignal(h, add, 2)
    assert (await aget_state(h))["n"] == 2
    await astop(h)
    assert supervisor.get(h.id).status.value == "stopped"


async def test_sync_calls_inside_a_running_loop_use_that_loop() -> None:
    h = start(ApiFlows, "idle", {"n": 1})
    assert loop_of(h) is asyncio.get_running_loop()
    signal(h, add, 1)
    assert get_state(h)["n"] == 2
    probe = FlowProbe()
    h2 = start(ApiFlows, "idle", notify=probe)
    probe.handle = h2
    stop(h2)
    assert (await probe.await_end(timeout=5))["type"] == "flow.stopped"
    await astop(h)


def test_sync_callers_without_a_loop_use_the_background_loop(handle: FlowHandle) -> None:
    assert loop_of(handle) is background_loop()
    assert background_loop().is_running()
    assert threading.current_thread() is threading.main_thread()
    signal(handle, add, 3)
    # signal returns once the update is applied.
    assert get_state(handle)["n"] == 3


def test_a_plain_thread_like_a_management_command_uses_the_background_loop() -> None:
    results: dict[str, Any] = {}

    def command() -> None:
        try:
            probe = start_probe(ApiFlows, "idle", {"n": 10})
            assert probe.handle is not None
            results["loop"] = loop_of(probe.handle)
            signal(probe.handle, add, 5)
            results["state"] = get_state(probe.handle)
            signal(probe.handle, {"done": True})
            results["final"] = probe.wait_end(timeout=5)
        except BaseException as exc:  # reported to the test below
            results["error"] = exc

    worker = threading.Thread(target=command)
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert "error" not in results, results.get("error")
    assert results["loop"] is background_loop()
    assert results["state"]["n"] == 15
    assert results["final"]["type"] == "flow.done"
    assert results["final"]["state"]["n"] == 15


def test_calls_from_many_threads_at_once() -> None:
    shared = start(ApiFlows, "idle")
    barrier = threading.Barrier(8)

    def client(i: int) -> tuple[int, int, bool]:
        barrier.wait(5)
        own = start(ApiFlows, "idle", {"n": i})
        for _ in range(20):
            signal(own, add, 1)
            signal(shared, add, 1)
        n = get_state(own)["n"]
        same_loop = loop_of(own) is background_loop()
        stop(own)
        try:
            signal(own, add, 1)
        except FlowNotFound:
            stopped = get_state(own)["n"]
        else:
            stopped = -1
        return n, stopped, same_loop

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client, range(8)))
    assert results == [(i + 20, i + 20, True) for i in range(8)]
    assert get_state(shared)["n"] == 8 * 20
    stop(shared)


def test_signals_from_another_thread_are_applied_in_order() -> None:
    probe = start_probe(ApiFlows, "idle")
    assert probe.handle is not None
    flow_id = probe.handle.id

    def sender() -> None:
        for i in range(100):
            signal(flow_id, append, i)
        signal(flow_id, {"done": True})

    worker = threading.Thread(target=sender)
    worker.start()
    worker.join(10)
    final = probe.wait_end(timeout=5)
    assert final["type"] == "flow.done"
    assert final["state"]["items"] == list(range(100))
    # Every change was published, in order, with increasing versions.
    versions = [m["version"] for m in probe.messages]
    assert versions == list(range(1, len(versions) + 1))
    lengths = [len(s["items"]) for s in probe.states]
    assert lengths == sorted(lengths)


def test_signals_queued_behind_a_step_from_other_threads_keep_their_order() -> None:
    started, release = threading.Event(), threading.Event()

    def work(state: dict) -> Ok:
        started.set()
        release.wait(5)
        return Ok({**state, "items": [*state["items"], "work"]})

    class BusyFlows(Flows):
        busy = flow(run(work), wait_until(is_done), initial_state={"items": [], "done": False})

    probe = start_probe(BusyFlows, "busy")
    assert probe.handle is not None
    assert started.wait(5)

    def sender(start_at: int) -> None:
        for i in range(start_at, start_at + 10):
            signal(probe.handle, append, i)  # type: ignore[arg-type]

    worker = threading.Thread(target=sender, args=(0,))
    worker.start()
    worker.join(5)
    assert not worker.is_alive()  # queued signals return at once
    # Never blocked by running work, and never a half-applied state.
    assert get_state(probe.handle) == {"items": [], "done": False}
    signal(probe.handle, {"done": True})
    release.set()
    final = probe.wait_end(timeout=5)
    assert final["type"] == "flow.done"
    assert final["state"]["items"] == ["work", *range(10)]


async def test_sync_code_run_through_sync_to_async_lands_on_the_callers_loop() -> None:
    h = await sync_to_async(start)(ApiFlows, "idle")
    assert loop_of(h) is asyncio.get_running_loop()
    await sync_to_async(signal)(h, add, 4)
    assert (await sync_to_async(get_state)(h))["n"] == 4
    await sync_to_async(stop)(h)
    assert supervisor.get(h.id).status.value == "stopped"


async def test_a_plain_thread_started_from_async_code_uses_the_background_loop() -> None:
    h = await asyncio.to_thread(start, ApiFlows, "idle")
    assert loop_of(h) is background_loop()
    assert loop_of(h) is not asyncio.get_running_loop()
    # The async twins reach a flow on another loop.
    await asignal(h, add, 2)
    assert (await aget_state(h))["n"] == 2
    await astop(h)
    assert supervisor.get(h.id).status.value == "stopped"


async def http_get(app: Any, path: str) -> dict[str, Any]:
    communicator = HttpCommunicator(app, "GET", path, headers=[(b"host", b"testserver")])
    response: dict[str, Any] = await communicator.get_response(timeout=5)
    await communicator.wait(timeout=5)  # let Django finish the request (closes its files)
    return response


async def test_a_sync_view_under_an_asgi_server_lands_on_the_server_loop() -> None:
    with override_settings(ROOT_URLCONF="tests.urls_sync_view"):
        app = ASGIHandler()
        response = await http_get(app, "/start/")
        assert response["status"] == 200, response["body"]
        body = json.loads(response["body"])
        flow_id = body["id"]
        # The view ran in a worker thread, as Django runs sync views under ASGI ...
        assert body["thread"] != threading.get_ident()
        # ... yet its flow lives on the server's loop, not on the background loop.
        runner = supervisor.get(flow_id)
        assert runner.loop is asyncio.get_running_loop()
        assert runner.loop is not background_loop()
        assert runner.definition is ViewFlows.idle
        assert (await aget_state(flow_id))["via"] == "sync view"

        # Sync views can signal and stop it too.
        response = await http_get(app, f"/signal/{flow_id}/?done=0")
        assert response["status"] == 200, response["body"]
        assert json.loads(response["body"])["state"]["seen"] is True
        response = await http_get(app, f"/stop/{flow_id}/")
        assert response["status"] == 200, response["body"]
        assert json.loads(response["body"])["state"]["via"] == "sync view"
        assert supervisor.get(flow_id).status.value == "stopped"
