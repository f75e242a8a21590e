"""Fixtures shared by the test suite."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def pytest_configure(config: pytest.Config) -> None:
    """Declare "no event loop" in the main thread before any test runs.

    looptime's plugin asks the loop policy for the main thread's loop in every
    test. Until a loop has been set there, Python 3.11 then makes one, which the
    first async test replaces, leaving it unclosed: a ResourceWarning, which
    this suite turns into an error.
    """
    asyncio.set_event_loop(None)


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    """Messages left in the in-memory layer must not leak into the next test."""
    yield
    layer = get_channel_layer()
    if layer is not None and hasattr(layer, "flush"):
        async_to_sync(layer.flush)()
