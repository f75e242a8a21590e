"""caravela_flow.receiving: an idle receive that times out is one log line, not a traceback.

redis-py 8 gives sockets a 5 s timeout, as long as channels-redis's blocking
read: every idle receive then raises redis-py's ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer
from django.test import SimpleTestCase
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout

from caravela_flow import receiving
from caravela_flow.receiving import messages
from caravela_flow.testing import virtual_time
from tests.worker_support import RedisServer


class FakeLayer:
    """A layer whose receive takes ``wait`` s and raises each of ``failures`` in turn."""

    def __init__(self, failures: list[Exception], wait: float = 5.0) -> None:
        self.failures = failures
        self.wait = wait
        self.calls = 0

    async def receive(self, channel: str) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(self.wait)
        if self.failures:
            raise self.failures.pop(0)
        return {"type": "test.message", "n": self.calls}


async def first(layer: Any) -> Any:
    async for message in messages(layer, "chan", "worker"):
        return message
    raise AssertionError("no message")


class IdleTimeoutTests(SimpleTestCase):
    @virtual_time
    async def test_timeouts_while_idle_log_one_line_and_retry_at_once(self) -> None:
        layer = FakeLayer([RedisTimeout("Timeout reading from h:6379")] * 4)
        loop = asyncio.get_running_loop()
        with self.assertLogs("caravela_flow", logging.DEBUG) as logs:
            message = await first(layer)
        self.assertEqual(message["n"], 5)
        self.assertEqual(loop.time(), 25.0)  # five waits of 5 s, no backoff between them
        warnings = [r for r in logs.records if r.levelno == logging.WARNING]
        self.assertEqual(len(warnings), 1)
        self.assertIsNone(warnings[0].exc_info)
        self.assertIn(
            "worker: receive on chan timed out while waiting (TimeoutError: Timeout reading "
            "from h:6379); retrying. Give the channel layer's hosts a socket_timeout above 5 s "
            "(see check caravela_flow.W020)",
            warnings[0].getMessage(),
        )
        self.assertEqual([r.levelno for r in logs.records], [logging.WARNING] + [logging.DEBUG] * 3)

    @virtual_time
    async def test_pythons_timeout_error_counts_too(self) -> None:
        with self.assertLogs("caravela_flow", logging.WARNING) as logs:
            await first(FakeLayer([TimeoutError()]))
        [record] = logs.records
        self.assertIsNone(record.exc_info)

    @virtual_time
    async def test_a_timeout_that_comes_at_once_is_retried_after_the_backoff(self) -> None:
        layer = FakeLayer([RedisTimeout("connect")] * 3, wait=0)
        loop = asyncio.get_running_loop()
        with self.assertLogs("caravela_flow", logging.DEBUG):
            await first(layer)
        self.assertAlmostEqual(loop.time(), 0.1 + 0.2 + 0.4)

    @virtual_time
    async def test_a_refused_connection_is_one_line_and_its_end_another(self) -> None:
        with self.assertLogs("caravela_flow", logging.WARNING) as logs:
            await first(FakeLayer([RedisConnectionError("refused")], wait=0))
        self.assertEqual(
            [r.getMessage() for r in logs.records],
            [
                "worker: receive on chan failed (ConnectionError: refused); retrying",
                "worker: receiving on chan again after 1 failed attempts",
            ],
        )
        self.assertTrue(all(r.exc_info is None for r in logs.records))

    @virtual_time
    async def test_other_failures_keep_their_traceback(self) -> None:
        with self.assertLogs("caravela_flow", logging.WARNING) as logs:
            await first(FakeLayer([ValueError("unreadable message")], wait=0))
        [record] = logs.records
        self.assertEqual(record.getMessage(), "worker: receive on chan failed; retrying")
        self.assertIsNotNone(record.exc_info)


@pytest.mark.worker
async def test_a_real_redis_with_a_short_socket_timeout_logs_one_line(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # What redis-py 8's default does, with redis-py 7 and a 1 s timeout (under the 5 s wait).
    layer = RedisChannelLayer(
        hosts=[{"address": redis_server.url, "socket_timeout": 1}], prefix="receiving-test"
    )
    channel = await layer.new_channel()
    caplog.set_level(logging.DEBUG, "caravela_flow")
    received: asyncio.Queue[Any] = asyncio.Queue()

    async def read() -> None:
        async for message in messages(layer, channel, "worker"):
            await received.put(message)

    reader = asyncio.create_task(read())
    try:
        await asyncio.sleep(3.5)  # three idle timeouts, at least two
        await layer.send(channel, {"type": "test.message"})
        message = await asyncio.wait_for(received.get(), 20)
        assert message["type"] == "test.message"
    finally:
        reader.cancel()
        await asyncio.wait_for(asyncio.gather(reader, return_exceptions=True), 20)
        await layer.flush()
        await layer.close_pools()
    ours = [r for r in caplog.records if r.name == "caravela_flow"]
    warnings = [r for r in ours if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "timed out while waiting" in warnings[0].getMessage()
    assert warnings[0].exc_info is None
    assert all(r.exc_info is None for r in ours)
    assert len(ours) >= 2


# --- outages and unreadable messages (no virtual time: the backoff is made tiny) ---


class FlakyLayer:
    """Raises each of ``failures`` in turn from ``receive``, then returns messages."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = list(failures)
        self.received = 0

    async def receive(self, channel: str) -> dict[str, Any]:
        if self.failures:
            raise self.failures.pop(0)
        self.received += 1
        return {"type": "ok", "n": self.received}


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receiving, "FIRST_BACKOFF", 0.001)
    monkeypatch.setattr(receiving, "MAX_BACKOFF", 0.004)


async def first_of(layer: FlakyLayer) -> dict[str, Any]:
    async for message in receiving.messages(layer, "chan", "reader"):
        return message  # type: ignore[no-any-return]
    raise AssertionError("the loop ended")


@pytest.mark.usefixtures("quick_backoff")
async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = FlakyLayer([ConnectionError("refused")] * 5 + [TimeoutError("idle")])
    with caplog.at_level(logging.DEBUG, logger="caravela_flow"):
        assert await first_of(layer) == {"type": "ok", "n": 1}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "reader: receive on chan failed (ConnectionError: refused); retrying",
        "reader: receiving on chan again after 6 failed attempts",
    ]
    assert all(r.exc_info is None for r in warnings)
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 5


@pytest.mark.usefixtures("quick_backoff")
async def test_a_message_that_cannot_be_read_is_logged_each_time_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = FlakyLayer([ValueError("bad msgpack"), ValueError("bad again")])
    with caplog.at_level(logging.WARNING, logger="caravela_flow"):
        assert await first_of(layer) == {"type": "ok", "n": 1}
    assert [r.getMessage() for r in caplog.records] == [
        "reader: receive on chan failed; retrying"
    ] * 2
    assert all(r.exc_info is not None for r in caplog.records)


class SwallowingLayer:
    """A receive that swallows its first cancellation, as asyncio.wait_for can on 3.11."""

    def __init__(self) -> None:
        self.swallowed = asyncio.Event()

    async def receive(self, channel: str) -> dict[str, Any]:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.swallowed.set()
        raise TimeoutError("Timeout reading from h:6379")


async def test_a_cancellation_the_receive_swallowed_still_ends_the_loop() -> None:
    layer = SwallowingLayer()

    async def read() -> None:
        async for _ in messages(layer, "chan", "worker"):
            raise AssertionError("no message is ever received")

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    reader.cancel()
    await asyncio.wait_for(layer.swallowed.wait(), 5)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(reader, 5)
