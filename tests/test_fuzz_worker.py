"""Fuzzing worker mode's message handling: the worker host and the caller's reply handling.

Unit level: the handlers run on the test's loop against an in-memory channel
layer; the host's Redis directory is replaced by a stub (nothing here needs
Redis). Every example feeds a batch of random or malformed messages, then a
valid request, and checks that

- nothing crashed (no ERROR record, the valid request is still answered),
- each refusal was logged at most once, at WARNING,
- no internal table grew with the junk (offers, remembered answers, waiters),
- the flow the junk aimed at is still running, or ended with a final message.

One test against a real ``runworker`` and a private redis-server is in
``test_fuzz_runworker.py``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caravela_flow import host as host_module
from caravela_flow import remote
from caravela_flow.errors import FlowError
from caravela_flow.host import _HANDLERS, WorkerHost
from caravela_flow.supervisor import Snapshot, supervisor
from tests.flowapp.flows import WorkerFlows
from tests.fuzz_support import captured, ids, junk, message, records

FUZZ = settings(
    max_examples=100,
    deadline=None,
    # The same examples every run: a failure is reproducible, never a one-off.
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Generous: bounds waits for replies that normally take a millisecond.
TIMEOUT = 5.0

#: Every type a worker host handles (its own table), and two it must not.
TYPES = [*sorted(_HANDLERS), "caravela.reply", "flow.state"]
FUNCTIONS = [
    "tests.flowapp.flows:increment",
    "tests.flowapp.flows:tag",
    "tests.flowapp.flows:untagged",
    "demo_site.library.flows:logging.config.dictConfig",
    "subprocess:call",
    "os:system",
]


class StubDirectory:
    """The host's Redis directory, reduced to what starting a flow asks of it."""

    async def register(self, host: str, flow_id: str, spec: dict[str, Any]) -> None:
        return None

    async def finish(self, host: str, flow_id: str, spec: dict[str, Any], retain: float) -> None:
        return None


class StubLeases:
    directory = StubDirectory()


async def settle(host: WorkerHost) -> None:
    """Wait until every reply the host is sending has been sent."""
    for _ in range(100):
        pending = [t for t in host._tasks if not t.done()]
        if not pending:
            return
        await asyncio.wait(pending, timeout=TIMEOUT)
    raise AssertionError("the host's tasks never settled")


async def drain(layer: InMemoryChannelLayer, channel: str) -> list[dict[str, Any]]:
    """Every message waiting on ``channel``."""
    found = []
    while True:
        try:
            async with asyncio.timeout(0.001):
                found.append(await layer.receive(channel))
        except TimeoutError:
            return found


@pytest.fixture
async def rig() -> AsyncIterator[tuple[WorkerHost, InMemoryChannelLayer, str]]:
    """A worker host (not started: no Redis) and a peer channel for its replies."""
    layer = InMemoryChannelLayer(capacity=1000)
    host = WorkerHost(layer)
    host.channel = await layer.new_channel()
    host.leases = StubLeases()  # type: ignore[assignment]
    peer = await layer.new_channel()
    before = {info.id for info in supervisor.flows()}
    try:
        yield host, layer, peer
    finally:
        for timer in [t for _, t in host.offers.values()]:
            timer.cancel()
        for info in supervisor.flows():
            if info.id not in before and info.status == "running":
                task = supervisor.stop(info.id)
                if task is not None:
                    await asyncio.wait([task], timeout=TIMEOUT)
        await settle(host)
        for info in supervisor.flows():
            if info.id not in before:
                supervisor.forget(info.id)


async def ask(
    host: WorkerHost, layer: InMemoryChannelLayer, peer: str, request: dict[str, Any]
) -> dict[str, Any]:
    """Hand ``request`` to the host and return its answer on ``peer``."""
    rid = uuid.uuid4().hex
    host.handle({**request, "request": rid, "reply": peer})
    await settle(host)
    async with asyncio.timeout(TIMEOUT):
        while True:
            answer = await layer.receive(peer)
            if answer.get("request") == rid:
                return answer


def host_messages(flow_id: str, peer: str) -> st.SearchStrategy[Any]:
    """Junk for a host: mostly well addressed (so it reaches the handlers), else anything."""
    target = st.just(flow_id) | ids
    fields = {
        "flow": st.just(WorkerFlows.hold.key) | st.sampled_from(["os.system", "x.Y.z"]) | junk,
        "state": st.just({}) | junk,
        "update": st.dictionaries(st.text(max_size=8), junk, max_size=3) | junk,
        "fn": st.sampled_from(FUNCTIONS) | junk,
        "args": st.lists(junk, max_size=3) | junk,
        "notify": st.sampled_from([None, "group.ok", "bad group!"]) | junk,
        "key": st.sampled_from([None, "k", ""]) | junk,
        "expires": junk,
    }
    bad_reply = st.sampled_from(["", "bad name!", "x" * 150, "specific.a!b"]) | junk
    addressed = st.fixed_dictionaries(
        {
            "type": st.sampled_from(TYPES),
            "request": st.builds(lambda: uuid.uuid4().hex),
            "reply": st.just(peer) | st.just(peer) | bad_reply,
            "flow_id": target,
        },
        optional=fields,
    )
    loose = message(TYPES, request=ids, reply=st.just(peer) | bad_reply, flow_id=target, **fields)
    return addressed | loose | junk


@FUZZ
@given(data=st.data())
async def test_the_worker_host_survives_junk_and_keeps_serving(
    rig: tuple[WorkerHost, InMemoryChannelLayer, str],
    caplog: pytest.LogCaptureFixture,
    data: st.DataObject,
) -> None:
    host, layer, peer = rig
    victim = supervisor.launch(WorkerFlows.hold, {"count": 0}, flow_id=uuid.uuid4().hex)
    batch = data.draw(st.lists(host_messages(victim.id, peer), min_size=1, max_size=8))
    answers_before = len(host.answers)
    caplog.clear()
    with captured(caplog):
        for junk_message in batch:
            mark = len(caplog.records)
            host.handle(junk_message)
            await settle(host)
            # The host's refusals; a flow that an allowed signal function crashes
            # logs its own WARNING (logger caravela_flow), later: that is no refusal.
            warnings = [
                r
                for r in caplog.records[mark:]
                if r.levelno >= logging.WARNING and r.name == "caravela_flow.worker"
            ]
            assert len(warnings) <= 1, [r.getMessage() for r in warnings]
        assert not records(caplog, logging.ERROR), [r.getMessage() for r in caplog.records]
        assert not records(caplog, logging.CRITICAL)

        # Nothing grew beyond one entry per message.
        assert len(host.answers) - answers_before <= len(batch)
        starts = sum(1 for m in batch if isinstance(m, dict) and m.get("type") == "caravela.start")
        assert len(host.offers) <= starts
        await drain(layer, peer)

        # The host still serves a valid request, on a fresh flow and on the victim.
        fresh = supervisor.launch(WorkerFlows.hold, {"count": 0}, flow_id=uuid.uuid4().hex)
        reply = await ask(
            host,
            layer,
            peer,
            {"type": "caravela.signal", "flow_id": fresh.id, "update": {"count": 5}},
        )
        assert reply["ok"], reply
        reply = await ask(host, layer, peer, {"type": "caravela.get_state", "flow_id": fresh.id})
        assert (reply["ok"], reply["state"]["count"]) == (True, 5)
        reply = await ask(host, layer, peer, {"type": "caravela.snapshot", "flow_id": victim.id})
        assert reply["ok"], reply
        # The victim is running, or it ended (a forged stop, a crash budget spent).
        assert reply["snapshot"]["status"] in ("running", "stopped", "failed", "done")
        assert not records(caplog, logging.ERROR)
    await drain(layer, peer)


# -- the caller: its reply channel and the replies' contents --------------------------


@pytest.fixture
async def caller() -> AsyncIterator[remote.Client]:
    """A caller's client on the in-memory layer (its receive loop running)."""
    client = remote.Client()
    # What _connect() does, on the in-memory layer (the directory needs Redis; unused here).
    client.layer = InMemoryChannelLayer(capacity=1000)
    client.channel = await client.layer.new_channel()
    client._receiver = asyncio.get_running_loop().create_task(client._receive())
    try:
        yield client
    finally:
        await client.close()


REPLY_TYPES = [
    "caravela.reply",
    "caravela.offer",
    "caravela.started",
    "caravela.refuse",
    "caravela.flows",
]
replies = message(
    REPLY_TYPES,
    request=ids | st.lists(st.text(max_size=4), max_size=2),
    ok=junk,
    error=st.sampled_from(["not_found", "bad_request", "failed", "expired"]) | junk,
    message=junk,
    worker=junk,
    state=junk,
    snapshot=junk,
    flows=junk,
)


@FUZZ
@given(batch=st.lists(replies, max_size=8))
async def test_the_caller_s_reply_channel_survives_junk(
    caller: remote.Client, caplog: pytest.LogCaptureFixture, batch: list[dict[str, Any]]
) -> None:
    request = uuid.uuid4().hex
    waiting: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    caller._waiters[request] = waiting
    caplog.clear()
    assert caller.channel is not None
    try:
        with captured(caplog):
            for junk_reply in batch:
                await caller.layer.send(caller.channel, junk_reply)
            await caller.layer.send(
                caller.channel, {"type": "caravela.reply", "request": request, "ok": True}
            )
            async with asyncio.timeout(TIMEOUT):
                answer = await waiting.get()
    finally:
        del caller._waiters[request]
    assert answer == {"type": "caravela.reply", "request": request, "ok": True}
    assert waiting.empty()  # junk never reaches a waiter it does not name
    assert caller._receiver is not None and not caller._receiver.done()
    assert caller._waiters == {}
    assert not records(caplog, logging.ERROR)
    assert len(records(caplog, logging.WARNING)) <= len(batch)


class CannedClient:
    """Stands in for the caller's client: every request gets ``reply``."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply

    async def request(self, flow_id: str, kind: str, fields: dict[str, Any]) -> Any:
        return self.reply


@FUZZ
@given(
    reply=st.fixed_dictionaries(
        {"ok": st.just(True)},
        optional={
            "state": junk,
            "snapshot": junk
            | st.fixed_dictionaries(
                {},
                optional={
                    "flow_id": junk,
                    "status": junk,
                    "version": junk,
                    "state": junk,
                    "reason": junk,
                },
            ),
        },
    )
)
async def test_a_malformed_reply_is_a_flow_error_never_a_raw_exception(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, reply: dict[str, Any]
) -> None:
    monkeypatch.setattr(remote, "client", lambda: CannedClient(reply))
    backend = remote.WorkerBackend()
    flow_id = uuid.uuid4().hex
    caplog.clear()
    with captured(caplog):
        for call in (backend.aget_state, backend.asnapshot):
            try:
                result = await call(flow_id)
            except FlowError as exc:
                assert "malformed" in str(exc)
            else:
                assert isinstance(result, dict | Snapshot)
    assert len(records(caplog, logging.WARNING)) <= 2
    assert not records(caplog, logging.ERROR)


@FUZZ
@given(reply=st.dictionaries(st.sampled_from(["ok", "error", "message"]), junk))
def test_a_refusal_of_any_shape_becomes_a_flow_error(reply: dict[str, Any]) -> None:
    assert isinstance(remote._error(reply), FlowError)


@pytest.mark.parametrize("reply", ["", "bad name!", "x" * 150, 7, None, ["a"]])
@pytest.mark.parametrize(
    "request_",
    [
        {"type": "caravela.signal", "update": {"n": 2**70}},
        {"type": "caravela.start", "flow": "x.Y.z"},
    ],
)
async def test_a_reply_channel_no_layer_accepts_is_refused_once_before_any_work(
    rig: tuple[WorkerHost, InMemoryChannelLayer, str],
    caplog: pytest.LogCaptureFixture,
    reply: Any,
    request_: dict[str, Any],
) -> None:
    host, _, _ = rig
    with captured(caplog):
        host.handle(
            {**request_, "request": uuid.uuid4().hex, "reply": reply, "flow_id": uuid.uuid4().hex}
        )
        await settle(host)
    [refusal] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "refused a malformed" in refusal
    assert host.answers == {} and host.offers == {}


async def test_a_flood_of_requests_never_grows_the_host_s_tables_past_their_bounds(
    rig: tuple[WorkerHost, InMemoryChannelLayer, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host, layer, peer = rig
    monkeypatch.setattr(host_module, "REMEMBERED", 50)
    monkeypatch.setattr(host_module, "MAX_OFFERS", 20)
    with captured(caplog):
        for _ in range(200):
            rid, flow_id = uuid.uuid4().hex, uuid.uuid4().hex
            host.handle(
                {"type": "caravela.get_state", "request": rid, "reply": peer, "flow_id": flow_id}
            )
            start = {"type": "caravela.start", "flow": WorkerFlows.hold.key, "state": {}}
            host.handle({**start, "request": uuid.uuid4().hex, "reply": peer, "flow_id": flow_id})
            await settle(host)
            await drain(layer, peer)
    assert len(host.answers) == 50
    assert len(host.offers) == 20
    refused = [r for r in caplog.records if "offers are open" in r.getMessage()]
    assert len(refused) == 180 and all(r.levelno == logging.WARNING for r in refused)
