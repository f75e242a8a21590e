"""The benchmark's WebSocket client: many subscriptions, a latency sample per ``state`` event.

Run by ``bench_worker_latency.py`` as ``python -m worker_bench.wsclient`` (no
Django needed). Commands (stdin):

- ``connect BASE PATH CONCURRENCY``: open one WebSocket per URL path listed
  in PATH (JSON) on server BASE (``ws://host:port``), at most CONCURRENCY
  handshakes at once, each with ``Origin: http://127.0.0.1``; answers once
  every socket got its snapshot (or failed).
- ``drain EXPECTED QUIET TIMEOUT``: wait until EXPECTED ``state`` events
  arrived since the last ``reset``, or none came for QUIET seconds, or TIMEOUT.
- ``reset``: forget the samples so far.
- ``dump PATH``: write the samples (``[latency ms, baseline?]``) to PATH.
- ``close``: close every socket.

A sample is ``time.time()`` on arrival minus the ``t`` the signaller put in
the state. Messages whose version is at least 10**6 are the baseline's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from .child import answer, serve

ORIGIN = Origin("http://127.0.0.1")
RAW_VERSIONS_FROM = 10**6


class Subscriptions:
    def __init__(self) -> None:
        self.sockets: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.samples: list[tuple[float, bool]] = []
        self.other_events: dict[str, int] = {}
        self.closed_early = 0
        self.last_arrival = 0.0
        self._arrived = asyncio.Event()

    async def connect(self, args: list[str]) -> tuple[str, Any]:
        base, path, concurrency = args[0], args[1], int(args[2])
        with open(path) as source:
            paths: list[str] = json.load(source)
        slots = asyncio.Semaphore(concurrency)
        failures: dict[str, int] = {}
        began = time.perf_counter()

        async def one(url_path: str) -> None:
            async with slots:
                try:
                    socket = await connect(
                        base + url_path,
                        origin=ORIGIN,
                        compression=None,
                        ping_interval=None,
                        max_queue=None,
                    )
                    first = json.loads(await asyncio.wait_for(socket.recv(), 30))
                except Exception as exc:
                    name = type(exc).__name__
                    failures[name] = failures.get(name, 0) + 1
                    return
                if first.get("event") != "snapshot":
                    failures[f"first event {first.get('event')}"] = 1 + failures.get(
                        f"first event {first.get('event')}", 0
                    )
                self.sockets.append(socket)
                self.readers.append(asyncio.create_task(self.read(socket)))

        await asyncio.gather(*(one(p) for p in paths))
        return "connected", {
            "open": len(self.sockets),
            "failures": failures,
            "seconds": time.perf_counter() - began,
        }

    async def read(self, socket: ClientConnection) -> None:
        samples = self.samples
        try:
            async for raw in socket:
                now = time.time()
                data = json.loads(raw)
                event = data.get("event")
                if event == "state":
                    samples.append(
                        ((now - data["state"]["t"]) * 1000, data["version"] >= RAW_VERSIONS_FROM)
                    )
                    self.last_arrival = now
                    self._arrived.set()
                else:
                    self.other_events[event] = self.other_events.get(event, 0) + 1
        except Exception:
            pass
        self.closed_early += 1

    async def drain(self, args: list[str]) -> tuple[str, Any]:
        expected, quiet, timeout = int(args[0]), float(args[1]), float(args[2])
        deadline = time.monotonic() + timeout
        while len(self.samples) < expected and time.monotonic() < deadline:
            self._arrived.clear()
            wait = min(quiet, deadline - time.monotonic())
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                break
        return "drained", {"received": len(self.samples), "closed_early": self.closed_early}

    async def reset(self, args: list[str]) -> tuple[str, Any]:
        count, self.samples[:] = len(self.samples), []
        self.other_events.clear()
        return "reset", {"forgot": count}

    async def dump(self, args: list[str]) -> tuple[str, Any]:
        with open(args[0], "w") as out:
            json.dump(self.samples, out)
        return "dumped", {
            "samples": len(self.samples),
            "other_events": self.other_events,
            "closed_early": self.closed_early,
        }

    async def close(self, args: list[str]) -> tuple[str, Any]:
        for reader in self.readers:
            reader.cancel()

        async def close(socket: ClientConnection) -> None:
            with contextlib.suppress(Exception):
                await socket.close()

        await asyncio.gather(*(close(socket) for socket in self.sockets))
        count = len(self.sockets)
        self.sockets.clear()
        self.readers.clear()
        return "closed", {"closed": count}


async def main() -> None:
    subs = Subscriptions()
    try:
        await serve(
            {
                "connect": subs.connect,
                "drain": subs.drain,
                "reset": subs.reset,
                "dump": subs.dump,
                "close": subs.close,
            }
        )
    finally:
        await subs.close([])


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        answer("interrupted")
