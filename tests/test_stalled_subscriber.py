"""A WebSocket client that never reads cannot grow daphne's memory (DESIGN §9, docs/client.md).

Real parts: a private redis-server, a ``runworker``, daphne, a raw TCP client
that completes the WebSocket handshake and then never reads, and a real
``websockets`` client beside it that reads. ~300 states of 256 KB each are
pushed to both. Daphne's resident memory (``VmRSS`` of its process) stays
bounded, the reading client still ends with the latest state, and the
stalled socket is closed with 4429 once it has read nothing for
``STALLED_SECONDS``. ``tests/benchmarks/bench_storm.py`` prints the same
figures.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from caravela_flow import asignal, astart, astop, subscription_url
from caravela_flow.consumers import STALLED_SECONDS
from tests.flowapp.flows import WorkerFlows, fill
from tests.worker_support import Daphne, RedisServer, WorkerPool, worker_mode

pytestmark = pytest.mark.worker

STATES = 300
SIZE = 256 * 1024
#: Daphne buffered about 74 MB for one such socket before the bound.
RSS_BOUND = 40 * 1024 * 1024


def rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes (``VmRSS`` in ``/proc/PID/status``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def stalled_socket(port: int, path: str) -> socket.socket:
    """A TCP client that completes the WebSocket handshake for ``path``, then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small kernel buffer
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://127.0.0.1:{port}\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:  # the handshake's answer only: nothing after it
        chunk = sock.recv(1)
        assert chunk, "daphne closed the connection during the handshake"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


class Sampler:
    """The highest ``rss(pid)`` seen while it runs (sampled every 50 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss(pid)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss(self.pid))
            await asyncio.sleep(0.05)

    def __enter__(self) -> Sampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss(self.pid))


async def push_states(handle: Any, count: int, size: int) -> None:
    for n in range(1, count + 1):
        await asignal(handle, fill, n, size)


async def test_a_client_that_never_reads_leaves_daphne_s_memory_bounded(
    make_pool: Callable[[], WorkerPool], redis_server: RedisServer, worker_logs: Path
) -> None:
    websockets = pytest.importorskip("websockets.asyncio.client")
    pool = make_pool()
    pool.spawn(1)
    daphne = Daphne(redis_server.url, pool.prefix, worker_logs)
    stalled: socket.socket | None = None
    try:
        with worker_mode(redis_server.url, pool.prefix):
            handle = await astart(WorkerFlows, "hold")
            path = subscription_url(handle)
            async with websockets.connect(
                daphne.url(path), origin=daphne.origin, max_size=None
            ) as reader:
                first = json.loads(await asyncio.wait_for(reader.recv(), 20))
                assert first["event"] == "snapshot"
                latest = {"n": 0}

                async def read() -> None:
                    async for frame in reader:
                        event = json.loads(frame)
                        latest["n"] = event.get("state", {}).get("n", latest["n"])
                        if latest["n"] == STATES:
                            return

                # Warm up daphne's allocations with a few big states, then take the baseline.
                await push_states(handle, 3, SIZE)
                stalled = stalled_socket(daphne.port, path)
                baseline = rss(daphne.pid)
                reading = asyncio.create_task(read())
                begun = time.monotonic()
                with Sampler(daphne.pid) as sampler:
                    await push_states(handle, STATES, SIZE)
                    await asyncio.wait_for(reading, 60)  # the reader ends with the latest state
                pushed = time.monotonic() - begun
            grown = sampler.peak - baseline
            print(
                f"[figure] {STATES} x {SIZE // 1024} KB states in {pushed:.1f} s to a stalled "
                f"and a reading socket: daphne RSS {baseline / 2**20:.0f} MB, "
                f"peak {sampler.peak / 2**20:.0f} MB (+{grown / 2**20:.1f} MB)"
            )
            assert grown < RSS_BOUND
            # The stalled socket is closed once it has read nothing for STALLED_SECONDS.
            await daphne.await_line(r"closing it \(4429\)", STALLED_SECONDS + 30)
            await astop(handle)
    finally:
        if stalled is not None:
            stalled.close()
        daphne.stop()
