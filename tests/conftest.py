"""Fixtures shared by the test suite."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from tests.worker_support import (
    REDIS_SERVER,
    RedisServer,
    WorkerPool,
    live_children,
    unique_prefix,
)


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


# -- worker mode: a private redis-server and runworker processes --------------


@pytest.fixture(scope="session")
def worker_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the logs of redis-server, runworker and daphne children go."""
    return tmp_path_factory.mktemp("worker-logs")


@pytest.fixture(scope="session")
def redis_server(worker_logs: Path) -> Iterator[RedisServer]:
    """A private redis-server for the whole run (no persistence), stopped at the end."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (`make deps-system` installs it)")
    server = RedisServer(worker_logs)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_pool(
    redis_server: RedisServer, worker_logs: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], WorkerPool]]:
    """Make worker pools under a prefix of this test's own; all are stopped at teardown."""
    pools: list[WorkerPool] = []

    def make() -> WorkerPool:
        pool = WorkerPool(redis_server.url, unique_prefix(request.node.name), worker_logs)
        pools.append(pool)
        return pool

    try:
        yield make
    finally:
        for pool in pools:
            pool.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """When a test fails, show the end of the log of every child process still running."""
    report = yield
    if report.failed:
        for child in live_children():
            report.sections.append((f"{child.name} log ({child.log})", child.tail(60)))
    return report
