"""``FlowConsumer`` through the demo's real ASGI stack (origin check, sessions, auth).

Flows run on the test's loop (local mode), so the consumer, the runner and
the channel layer share one loop, as they do under daphne.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings

from caravela_flow import (
    FlowHandle,
    Flows,
    asignal,
    astop,
    flow,
    run,
    set_state,
    subscription_url,
    wait_until,
)
from caravela_flow.api import backend
from caravela_flow.consumers import FlowConsumer
from caravela_flow.groups import flow_group
from caravela_flow.notify import publisher
from caravela_flow.supervisor import supervisor
from caravela_flow.testing import FlowProbe, astart_probe
from caravela_flow.tokens import URL_PREFIX, make_token
from demo_site.asgi import application

from .subscriptions import ORIGIN, token_made_ago

#: Generous: these bound waits for events that normally take milliseconds.
TIMEOUT = 5.0
#: How long "nothing more arrives" is watched for.
QUIET = 0.4


def go(state: dict) -> bool:
    return bool(state["go"])


def finish(state: dict) -> dict:
    return {**state, "finished": True}


async def explode(state: dict) -> None:
    raise ValueError("boom")


class SocketFlows(Flows):
    gated = flow(
        wait_until(go), set_state(finish), initial_state={"go": False, "n": 0, "finished": False}
    )
    failing = flow(wait_until(go), run(explode), initial_state={"go": False})


START = {"go": False, "n": 0, "finished": False}


# -- helpers ----------------------------------------------------------------


def communicator(path: str, *headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=[ORIGIN, *headers])


@contextlib.asynccontextmanager
async def subscribed(path: str, *headers: tuple[bytes, bytes]) -> AsyncIterator[Any]:
    """An accepted socket on ``path``; disconnected (and the app awaited) on exit."""
    comm = communicator(path, *headers)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected, "the consumer accepts before it checks anything"
    try:
        yield comm
    finally:
        await comm.disconnect(timeout=TIMEOUT)


async def close_code(comm: WebsocketCommunicator) -> int:
    """The close code of the next output, which must be a close."""
    message = await comm.receive_output(timeout=TIMEOUT)
    assert message["type"] == "websocket.close", message
    code: int = message["code"]
    return code


async def frames_until_close(comm: WebsocketCommunicator) -> tuple[list[dict], int]:
    """Every JSON frame up to the server's close, and the close code."""
    frames: list[dict] = []
    while True:
        message = await comm.receive_output(timeout=TIMEOUT)
        if message["type"] == "websocket.close":
            return frames, message["code"]
        frames.append(json.loads(message["text"]))


def handle_of(probe: FlowProbe) -> FlowHandle:
    assert probe.handle is not None
    return probe.handle


def path_of(probe: FlowProbe, user: Any = None) -> str:
    return subscription_url(handle_of(probe), user)


def flow_id(probe: FlowProbe) -> str:
    return handle_of(probe).id


async def published(probe: FlowProbe) -> None:
    """Wait until every group message of the probe's flow (echoes included) is sent."""
    found = publisher(asyncio.get_running_loop())
    assert found is not None
    await found.flush(TIMEOUT)


@pytest.fixture
def caplog_flow(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """``caplog`` that also sees the ``caravela_flow`` logger (it does not propagate)."""
    logger = logging.getLogger("caravela_flow")
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


# -- routing ----------------------------------------------------------------


def test_route_matches_the_token_url_prefix() -> None:
    from caravela_flow.routing import websocket_urlpatterns

    token = make_token(uuid.uuid4().hex)
    path = subscription_url(uuid.uuid4().hex)
    assert path.startswith(URL_PREFIX)
    pattern = websocket_urlpatterns[0].pattern
    match = pattern.match(f"{URL_PREFIX.lstrip('/')}{token}/")
    assert match is not None and match[2] == {"token": token}
    assert websocket_urlpatterns[0].callback.consumer_class is FlowConsumer


# -- refusals ---------------------------------------------------------------


def forged(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


REFUSALS = {
    "missing": lambda flow_id: URL_PREFIX,
    "forged": lambda flow_id: f"{URL_PREFIX}{forged(make_token(flow_id))}/",
    "garbage": lambda flow_id: f"{URL_PREFIX}not-a-token/",
    "expired": lambda flow_id: f"{URL_PREFIX}{token_made_ago(flow_id, 3600 + 60)}/",
    "other user": lambda flow_id: subscription_url(flow_id, User(pk=424242)),
}


@pytest.mark.parametrize("kind", list(REFUSALS))
async def test_bad_token_is_refused_with_4403(kind: str) -> None:
    probe = await astart_probe(SocketFlows, "gated")
    async with subscribed(REFUSALS[kind](flow_id(probe))) as comm:
        assert await close_code(comm) == 4403
        # A refused socket joined nothing: later changes do not reach it.
        await asignal(handle_of(probe), {"n": 1})
        await published(probe)
        assert await comm.receive_nothing(QUIET)


async def test_valid_token_for_an_unknown_flow_gets_4404() -> None:
    async with subscribed(subscription_url(uuid.uuid4().hex)) as comm:
        assert await close_code(comm) == 4404


async def test_flow_no_longer_retained_gets_4404() -> None:
    probe = await astart_probe(SocketFlows, "gated", {"go": True})
    await probe.await_end(TIMEOUT)
    supervisor.forget(flow_id(probe))
    async with subscribed(path_of(probe)) as comm:
        assert await close_code(comm) == 4404


@pytest.mark.parametrize(
    "headers",
    [[(b"origin", b"http://evil.example")], []],
    ids=["foreign origin", "no origin"],
)
async def test_socket_from_another_origin_is_denied(headers: list) -> None:
    probe = await astart_probe(SocketFlows, "gated")
    comm = WebsocketCommunicator(application, path_of(probe), headers=headers)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert not connected


# -- the push loop ------------------------------------------------------------


async def test_snapshot_first_then_every_change_then_done() -> None:
    probe = await astart_probe(SocketFlows, "gated")
    fid = flow_id(probe)
    async with subscribed(path_of(probe)) as comm:
        assert await comm.receive_json_from(TIMEOUT) == {
            "event": "snapshot",
            "flow_id": fid,
            "version": 0,
            "status": "running",
            "state": START,
        }
        await asignal(handle_of(probe), {"n": 1})
        assert await comm.receive_json_from(TIMEOUT) == {
            "event": "state",
            "flow_id": fid,
            "version": 1,
            "state": {**START, "n": 1},
        }
        await asignal(handle_of(probe), {"n": 2})
        assert await comm.receive_json_from(TIMEOUT) == {
            "event": "state",
            "flow_id": fid,
            "version": 2,
            "state": {**START, "n": 2},
        }
        await asignal(handle_of(probe), {"go": True})
        frames, code = await frames_until_close(comm)
    final = await probe.await_end(TIMEOUT)
    assert code == 1000
    assert frames[-1] == {
        "event": "done",
        "flow_id": fid,
        "version": final["version"],
        "state": {"go": True, "n": 2, "finished": True},
    }
    versions = [frame["version"] for frame in frames]
    assert versions == sorted(set(versions)) and versions[0] > 2
    for frame in frames[:-1]:
        assert set(frame) == {"event", "flow_id", "version", "state"}
        assert frame["event"] == "state" and frame["flow_id"] == fid


async def test_failed_flow_sends_error_with_reason_and_closes() -> None:
    probe = await astart_probe(SocketFlows, "failing")
    fid = flow_id(probe)
    async with subscribed(path_of(probe)) as comm:
        assert (await comm.receive_json_from(TIMEOUT))["event"] == "snapshot"
        await asignal(handle_of(probe), {"go": True})
        frames, code = await frames_until_close(comm)
    final = await probe.await_end(TIMEOUT)
    assert code == 1000
    assert frames[-1] == {
        "event": "error",
        "flow_id": fid,
        "version": final["version"],
        "reason": "ValueError: boom",
    }
    assert all(frame["event"] == "state" for frame in frames[:-1])


async def test_stopped_flow_sends_stopped_and_closes() -> None:
    probe = await astart_probe(SocketFlows, "gated", {"n": 7})
    fid = flow_id(probe)
    async with subscribed(path_of(probe)) as comm:
        assert (await comm.receive_json_from(TIMEOUT))["state"]["n"] == 7
        await astop(handle_of(probe))
        frames, code = await frames_until_close(comm)
    assert code == 1000
    assert frames == [
        {"event": "stopped", "flow_id": fid, "version": 1, "state": {**START, "n": 7}}
    ]


@pytest.mark.parametrize(
    ("name", "status", "extra"),
    [
        ("gated", "done", {"state": {**START, "go": True, "finished": True}}),
        ("failing", "failed", {"state": {"go": True}, "reason": "ValueError: boom"}),
    ],
)
async def test_late_subscriber_to_a_finished_flow_gets_a_final_snapshot(
    name: str, status: str, extra: dict
) -> None:
    probe = await astart_probe(SocketFlows, name, {"go": True})
    final = await probe.await_end(TIMEOUT)
    async with subscribed(path_of(probe)) as comm:
        snapshot = await comm.receive_json_from(TIMEOUT)
        assert await close_code(comm) == 1000
    assert snapshot == {
        "event": "snapshot",
        "flow_id": flow_id(probe),
        "version": final["version"],
        "status": status,
        **extra,
    }


async def test_late_subscriber_to_a_stopped_flow() -> None:
    probe = await astart_probe(SocketFlows, "gated")
    await astop(handle_of(probe))
    async with subscribed(path_of(probe)) as comm:
        snapshot = await comm.receive_json_from(TIMEOUT)
        assert await close_code(comm) == 1000
    assert snapshot["status"] == "stopped" and snapshot["version"] == 1
    assert "reason" not in snapshot


async def test_stale_and_foreign_messages_are_not_forwarded() -> None:
    probe = await astart_probe(SocketFlows, "gated")
    fid = flow_id(probe)
    layer = get_channel_layer()
    group = flow_group(fid)
    async with subscribed(path_of(probe)) as comm:
        assert (await comm.receive_json_from(TIMEOUT))["version"] == 0
        await asignal(handle_of(probe), {"n": 1})
        assert (await comm.receive_json_from(TIMEOUT))["version"] == 1
        stale = [
            {"type": "flow.state", "flow_id": fid, "version": 1, "state": {"n": "again"}},
            {"type": "flow.state", "flow_id": fid, "version": 0, "state": {"n": "older"}},
            {"type": "flow.done", "flow_id": fid, "version": 1, "state": {"n": "stale end"}},
            {"type": "flow.state", "flow_id": uuid.uuid4().hex, "version": 9, "state": {}},
        ]
        for message in stale:
            await layer.group_send(group, message)
        assert await comm.receive_nothing(QUIET), "stale or foreign messages were forwarded"
        # Still subscribed: the next real change arrives.
        await asignal(handle_of(probe), {"n": 2})
        frame = await comm.receive_json_from(TIMEOUT)
        assert (frame["event"], frame["version"], frame["state"]["n"]) == ("state", 2, 2)


async def test_bursts_and_echoes_reach_the_browser_once_in_order() -> None:
    probe = await astart_probe(SocketFlows, "gated")
    async with subscribed(path_of(probe)) as comm:
        assert (await comm.receive_json_from(TIMEOUT))["version"] == 0
        for n in range(1, 21):
            await asignal(handle_of(probe), {"n": n})
        frames: list[dict] = []
        while not frames or frames[-1]["state"]["n"] != 20:
            frames.append(await comm.receive_json_from(TIMEOUT))
        await published(probe)  # the publisher's echoes of the burst are sent by now
        assert await comm.receive_nothing(QUIET), "an echo was forwarded twice"
    versions = [frame["version"] for frame in frames]
    assert versions == sorted(set(versions)) and versions[-1] == 20


@pytest.mark.parametrize("when", ["after the snapshot", "before the snapshot"])
async def test_change_racing_the_subscription_is_never_missed(
    when: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change between joining the group and sending the snapshot reaches the browser once."""
    probe = await astart_probe(SocketFlows, "gated")
    local = backend()
    take_snapshot = local.asnapshot

    async def racing_snapshot(flow_id: str) -> Any:
        if when == "after the snapshot":
            snapshot = await take_snapshot(flow_id)
        await asignal(handle_of(probe), {"n": 1})
        await published(probe)  # the change is in the group before the snapshot is sent
        if when == "before the snapshot":
            snapshot = await take_snapshot(flow_id)
        return snapshot

    monkeypatch.setattr(local, "asnapshot", racing_snapshot)
    async with subscribed(path_of(probe)) as comm:
        first = await comm.receive_json_from(TIMEOUT)
        assert first["event"] == "snapshot"
        if when == "after the snapshot":
            assert (first["version"], first["state"]["n"]) == (0, 0)
            second = await comm.receive_json_from(TIMEOUT)
            assert (second["event"], second["version"], second["state"]["n"]) == ("state", 1, 1)
        else:
            assert (first["version"], first["state"]["n"]) == (1, 1)
        assert await comm.receive_nothing(QUIET), "a change was delivered twice"


async def test_signal_right_after_connect_is_seen() -> None:
    probe = await astart_probe(SocketFlows, "gated")
    comm = communicator(path_of(probe))
    await comm.send_input({"type": "websocket.connect"})
    await asignal(handle_of(probe), {"n": 1})
    assert (await comm.receive_output(TIMEOUT))["type"] == "websocket.accept"
    seen = await comm.receive_json_from(TIMEOUT)
    if seen["state"]["n"] != 1:
        seen = await comm.receive_json_from(TIMEOUT)
    assert (seen["version"], seen["state"]["n"]) == (1, 1)
    await comm.disconnect(timeout=TIMEOUT)


async def test_frames_from_the_browser_are_ignored() -> None:
    probe = await astart_probe(SocketFlows, "gated")
    async with subscribed(path_of(probe)) as comm:
        assert (await comm.receive_json_from(TIMEOUT))["event"] == "snapshot"
        await comm.send_to(text_data="not json at all")
        await comm.send_json_to({"go": True, "n": 99})
        await comm.send_to(bytes_data=b"\x00\x01")
        assert await comm.receive_nothing(QUIET)
        assert supervisor.state(flow_id(probe)) == START
        await asignal(handle_of(probe), {"n": 1})
        assert (await comm.receive_json_from(TIMEOUT))["state"]["n"] == 1


# -- users --------------------------------------------------------------------


def session_cookie(user: User) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode())


@pytest.mark.django_db(transaction=True)
async def test_tokens_are_bound_to_the_sessions_user() -> None:
    alice = await sync_to_async(User.objects.create_user)("alice")
    bob = await sync_to_async(User.objects.create_user)("bob")
    as_alice = await sync_to_async(session_cookie)(alice)
    as_bob = await sync_to_async(session_cookie)(bob)
    probe = await astart_probe(SocketFlows, "gated")

    async with subscribed(path_of(probe, alice), as_alice) as comm:
        snapshot = await comm.receive_json_from(TIMEOUT)
        assert snapshot["event"] == "snapshot" and snapshot["flow_id"] == flow_id(probe)
    refused = [
        (path_of(probe, alice), as_bob),  # another user's token
        (path_of(probe, alice), None),  # logged out
        (path_of(probe), as_alice),  # an anonymous token, used while logged in
    ]
    for path, cookie in refused:
        async with subscribed(path, *([cookie] if cookie else [])) as comm:
            assert await close_code(comm) == 4403, (path, cookie)


# -- housekeeping -------------------------------------------------------------


async def test_disconnect_leaves_the_group() -> None:
    layer = get_channel_layer()
    if not isinstance(layer, InMemoryChannelLayer):
        pytest.skip("inspects the in-memory layer's groups")
    probe = await astart_probe(SocketFlows, "gated")
    group = flow_group(flow_id(probe))
    async with subscribed(path_of(probe)) as comm:
        await comm.receive_json_from(TIMEOUT)
        assert len(layer.groups.get(group, {})) == 1
    assert not layer.groups.get(group)


async def test_group_membership_is_renewed_and_renewal_stops_on_disconnect(
    monkeypatch: pytest.MonkeyPatch, caplog_flow: pytest.LogCaptureFixture
) -> None:
    layer = get_channel_layer()
    probe = await astart_probe(SocketFlows, "gated")
    group = flow_group(flow_id(probe))
    adds: list[str] = []
    renewed = asyncio.Event()
    group_add = layer.group_add

    async def counting_group_add(name: str, channel: str) -> None:
        if name == group:
            adds.append(channel)
            if len(adds) == 2:
                raise ConnectionError("layer down for a moment")
            if len(adds) >= 4:
                renewed.set()
        await group_add(name, channel)

    monkeypatch.setattr(layer, "group_add", counting_group_add)
    with override_settings(CARAVELA_FLOW={"GROUP_REFRESH_SECONDS": 0.05}):
        async with subscribed(path_of(probe)) as comm:
            await comm.receive_json_from(TIMEOUT)
            await asyncio.wait_for(renewed.wait(), TIMEOUT)
            assert len(set(adds)) == 1, "renewals re-add the same channel"
            # A failed renewal is logged and does not end the subscription.
            assert "could not renew the group membership" in caplog_flow.text
            await asignal(handle_of(probe), {"n": 1})
            assert (await comm.receive_json_from(TIMEOUT))["state"]["n"] == 1
        name = f"caravela-flow subscription {flow_id(probe)}"
        tasks = [t for t in asyncio.all_tasks() if t.get_name() == name]
        if tasks:
            await asyncio.wait(tasks, timeout=TIMEOUT)
        assert all(t.cancelled() for t in tasks)
        assert not [t for t in asyncio.all_tasks() if t.get_name() == name and not t.done()]


async def test_failed_send_is_logged_and_closes_with_4500_which_daphne_can_send(
    monkeypatch: pytest.MonkeyPatch, caplog_flow: pytest.LogCaptureFixture
) -> None:
    send = FlowConsumer.send

    async def failing_send(self: FlowConsumer, text_data: str | None = None, **kw: Any) -> None:
        if text_data is not None and '"event": "state"' in text_data:
            raise RuntimeError("socket broke")
        await send(self, text_data=text_data, **kw)

    monkeypatch.setattr(FlowConsumer, "send", failing_send)
    probe = await astart_probe(SocketFlows, "gated")
    async with subscribed(path_of(probe)) as comm:
        assert (await comm.receive_json_from(TIMEOUT))["event"] == "snapshot"
        await asignal(handle_of(probe), {"n": 1})
        assert await close_code(comm) == 4500
    assert "could not send a state event" in caplog_flow.text
    assert "RuntimeError: socket broke" in caplog_flow.text


async def test_failed_snapshot_is_logged_and_closes_with_4500_which_daphne_can_send(
    monkeypatch: pytest.MonkeyPatch, caplog_flow: pytest.LogCaptureFixture
) -> None:
    async def broken(flow_id: str) -> Any:
        raise RuntimeError("backend unavailable")

    monkeypatch.setattr(backend(), "asnapshot", broken)
    probe = await astart_probe(SocketFlows, "gated")
    async with subscribed(path_of(probe)) as comm:
        assert await close_code(comm) == 4500
    assert "could not take a snapshot" in caplog_flow.text
