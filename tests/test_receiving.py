"""The receive loop every reader uses: failures are retried and logged without flooding."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from caravela_flow import receiving


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


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receiving, "FIRST_BACKOFF", 0.001)
    monkeypatch.setattr(receiving, "MAX_BACKOFF", 0.004)


async def first(layer: FlakyLayer) -> dict[str, Any]:
    async for message in receiving.messages(layer, "chan", "reader"):
        return message  # type: ignore[no-any-return]
    raise AssertionError("the loop ended")


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = FlakyLayer([ConnectionError("refused")] * 5 + [TimeoutError("idle")])
    with caplog.at_level(logging.DEBUG, logger="caravela_flow"):
        assert await first(layer) == {"type": "ok", "n": 1}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "reader: receive on chan failed (ConnectionError: refused); retrying",
        "reader: receiving on chan again after 6 failed attempts",
    ]
    assert all(r.exc_info is None for r in warnings)
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 5


async def test_a_message_that_cannot_be_read_is_logged_each_time_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = FlakyLayer([ValueError("bad msgpack"), ValueError("bad again")])
    with caplog.at_level(logging.WARNING, logger="caravela_flow"):
        assert await first(layer) == {"type": "ok", "n": 1}
    assert [r.getMessage() for r in caplog.records] == [
        "reader: receive on chan failed; retrying"
    ] * 2
    assert all(r.exc_info is not None for r in caplog.records)
