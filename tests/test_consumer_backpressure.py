"""A socket that cannot keep up: the consumer holds back only the latest state and a final one.

Unit tests: the transport is a stand-in (daphne's real one is exercised by
``tests/test_stalled_subscriber.py``). Flows run on the test's loop (local
mode), as in ``tests/test_consumer.py``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from caravela_flow import asignal
from caravela_flow import consumers as consumers_module
from caravela_flow.flowcontrol import WriteWatch, find_transport, watch_writes
from caravela_flow.testing import astart_probe
from tests.test_consumer import (
    QUIET,
    TIMEOUT,
    SocketFlows,
    close_code,
    frames_until_close,
    handle_of,
    path_of,
    subscribed,
)


class Transport:
    """The parts of a Twisted transport that :mod:`caravela_flow.flowcontrol` reads."""

    def __init__(self, producer: Any = None) -> None:
        self.producer = producer
        self.producerPaused = False
        self.connected = True
        self.disconnected = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert self.producer is None and streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


class Protocol:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport


class SessionWrapper:
    """As channels.sessions.InstanceSessionWrapper: keeps the real send as ``real_send``."""

    def __init__(self, send: Any) -> None:
        self.real_send = send

    async def send(self, message: Any) -> None:
        await self.real_send(message)


async def handle_reply(protocol: Protocol, message: Any) -> None:
    """Stands in for daphne's ``Server.handle_reply``."""


def daphne_send(transport: Transport) -> Any:
    return SessionWrapper(functools.partial(handle_reply, Protocol(transport))).send


def test_the_transport_is_found_behind_the_session_wrapper_and_daphne_s_partial() -> None:
    transport = Transport()
    assert find_transport(daphne_send(transport)) is transport
    assert find_transport(functools.partial(handle_reply, Protocol(transport))) is transport


@pytest.mark.parametrize("send", [print, lambda m: None, functools.partial(print, 1), None])
def test_no_transport_is_found_behind_other_sends(send: Any) -> None:
    assert find_transport(send) is None
    assert watch_writes(send) is None


def test_a_watch_registers_a_producer_only_where_there_is_none() -> None:
    bare = Transport()
    watch = watch_writes(daphne_send(bare))
    assert watch is not None and bare.producer is watch
    watch.detach()
    assert bare.producer is None

    upgraded = Transport(producer=object())  # daphne: the HTTPChannel the socket came from
    producer = upgraded.producer
    watch = watch_writes(daphne_send(upgraded))
    assert watch is not None and upgraded.producer is producer
    watch.detach()
    assert upgraded.producer is producer


async def test_a_watch_follows_the_transport_s_flag() -> None:
    transport = Transport()
    watch = WriteWatch(transport)
    assert not watch.paused
    transport.producerPaused = True
    assert watch.paused
    assert await watch.drained(0.05) is False
    asyncio.get_running_loop().call_later(0.05, setattr, transport, "producerPaused", False)
    assert await watch.drained(TIMEOUT) is True
    transport.producerPaused = True
    transport.disconnected = True
    assert watch.stopped and not watch.paused


class FakeWatch:
    """A write watch whose ``paused`` the test sets."""

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False

    async def drained(self, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.paused:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def detach(self) -> None:
        pass


@pytest.fixture
def backed_up(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeWatch]]:
    """Every consumer made meanwhile gets a :class:`FakeWatch` (listed here)."""
    made: list[FakeWatch] = []

    def fake(send: Any) -> FakeWatch:
        made.append(FakeWatch())
        return made[-1]

    monkeypatch.setattr(consumers_module, "watch_writes", fake)
    yield made


async def test_while_backed_up_only_the_latest_state_then_the_final_one_wait(
    backed_up: list[FakeWatch],
) -> None:
    probe = await astart_probe(SocketFlows, "gated")
    async with subscribed(path_of(probe)) as comm:
        assert (await comm.receive_json_from(TIMEOUT))["event"] == "snapshot"
        [watch] = backed_up
        watch.paused = True
        for n in range(1, 6):
            await asignal(handle_of(probe), {"n": n})
        await asignal(handle_of(probe), {"go": True})
        await probe.await_end(TIMEOUT)
        assert await comm.receive_nothing(QUIET)
        watch.paused = False
        frames, code = await frames_until_close(comm)
    assert [(f["event"], f["state"]["n"]) for f in frames] == [("state", 5), ("done", 5)]
    assert frames[0]["version"] < frames[1]["version"]
    assert code == 1000


async def test_a_socket_that_stays_backed_up_is_closed_with_4429(
    backed_up: list[FakeWatch],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(consumers_module, "STALLED_SECONDS", 0.2)
    logger = logging.getLogger("caravela_flow")
    logger.addHandler(caplog.handler)
    try:
        probe = await astart_probe(SocketFlows, "gated")
        async with subscribed(path_of(probe)) as comm:
            assert (await comm.receive_json_from(TIMEOUT))["event"] == "snapshot"
            backed_up[0].paused = True
            await asignal(handle_of(probe), {"n": 1})
            assert await close_code(comm) == 4429
    finally:
        logger.removeHandler(caplog.handler)
    assert "read nothing for 0.2 s; closing it (4429)" in caplog.text


async def test_a_socket_that_keeps_up_gets_every_state(backed_up: list[FakeWatch]) -> None:
    probe = await astart_probe(SocketFlows, "gated")
    async with subscribed(path_of(probe)) as comm:
        assert (await comm.receive_json_from(TIMEOUT))["event"] == "snapshot"
        for n in range(1, 4):
            await asignal(handle_of(probe), {"n": n})
            assert (await comm.receive_json_from(TIMEOUT))["state"]["n"] == n
