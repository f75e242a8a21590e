"""The benchmark's signalling process: starts flows and signals them at a fixed rate.

Run by ``bench_worker_latency.py`` as ``python -m worker_bench.driver`` with the
benchmark's settings and the worker-mode environment. Commands (stdin):

- ``start N CONCURRENCY PATH``: ``astart`` N flows, at most CONCURRENCY at once;
  writes their subscription URLs to PATH (JSON list).
- ``signal ours|raw RATE SECONDS MAX_IN_FLIGHT``: RATE signals a second for
  SECONDS, spread round-robin over the flows, with at most MAX_IN_FLIGHT
  unanswered (past it the schedule waits: the send lag shows it). ``ours`` is
  ``asignal(handle, {"t": time.time(), "seq": i})``; ``raw`` is a bare
  ``layer.send`` to the ``bench-raw`` channel of a ``flow.state``-shaped
  message whose per-flow version starts at 10**6.
- ``throughput SECONDS CONCURRENCY``: ``astart`` + one ``asignal``, over and
  over, CONCURRENCY at once, for SECONDS.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "worker_bench.settings")
django.setup()

from channels.layers import get_channel_layer  # noqa: E402

from caravela_flow import asignal, astart, subscription_url  # noqa: E402
from caravela_flow.errors import FlowError  # noqa: E402

from .child import answer, serve, summary  # noqa: E402
from .consumers import RAW_CHANNEL  # noqa: E402
from .flows import BenchFlows  # noqa: E402

#: First version of the baseline's messages: above any real flow's.
RAW_VERSIONS_FROM = 10**6

flows: list[str] = []
raw_versions: dict[str, int] = {}


def _error_name(exc: BaseException) -> str:
    return type(exc).__name__


async def start(args: list[str]) -> tuple[str, Any]:
    count, concurrency, path = int(args[0]), int(args[1]), args[2]
    slots = asyncio.Semaphore(concurrency)
    took: list[float] = []
    errors: dict[str, int] = {}
    new: list[str] = []

    async def one() -> None:
        async with slots:
            began = time.perf_counter()
            try:
                handle = await astart(BenchFlows, "hold")
            except FlowError as exc:
                errors[_error_name(exc)] = errors.get(_error_name(exc), 0) + 1
                return
            took.append((time.perf_counter() - began) * 1000)
            new.append(handle.id)

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    seconds = time.perf_counter() - began
    flows.extend(new)
    with open(path, "w") as out:
        json.dump([subscription_url(flow_id) for flow_id in flows], out)
    return "started", {
        "started": len(new),
        "seconds": seconds,
        "errors": errors,
        "start_ms": summary(took),
    }


async def signal(args: list[str]) -> tuple[str, Any]:
    kind, rate, seconds, most_allowed = args[0], float(args[1]), float(args[2]), int(args[3])
    if kind not in ("ours", "raw"):
        raise ValueError(f"signal kind must be ours or raw, not {kind!r}")
    if not flows:
        raise RuntimeError("no flows: start some first")
    layer = get_channel_layer()
    loop = asyncio.get_running_loop()
    total = max(int(rate * seconds), 1)
    interval = 1 / rate
    lags: list[float] = []
    calls: list[float] = []
    errors: dict[str, int] = {}
    pending: set[asyncio.Task[None]] = set()
    most = 0
    slots = asyncio.Semaphore(most_allowed)

    async def ours(flow_id: str, seq: int) -> None:
        sent = time.time()
        try:
            await asignal(flow_id, {"t": sent, "seq": seq})
        except FlowError as exc:
            errors[_error_name(exc)] = errors.get(_error_name(exc), 0) + 1
            return
        calls.append((time.time() - sent) * 1000)

    async def raw(flow_id: str, seq: int) -> None:
        version = raw_versions.get(flow_id, RAW_VERSIONS_FROM) + 1
        raw_versions[flow_id] = version
        sent = time.time()
        message = {
            "type": "bench.raw",
            "flow_id": flow_id,
            "version": version,
            "state": {"t": sent, "seq": seq},
        }
        try:
            await layer.send(RAW_CHANNEL, message)
        except Exception as exc:
            errors[_error_name(exc)] = errors.get(_error_name(exc), 0) + 1
            return
        calls.append((time.time() - sent) * 1000)

    send = ours if kind == "ours" else raw
    first = loop.time() + 0.01
    for seq in range(total):
        due = first + seq * interval
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        await slots.acquire()
        lags.append((loop.time() - due) * 1000)
        task = loop.create_task(send(flows[seq % len(flows)], seq))
        task.add_done_callback(lambda _: slots.release())
        pending.add(task)
        task.add_done_callback(pending.discard)
        most = max(most, len(pending))
    sent_for = loop.time() - first
    if pending:
        await asyncio.wait(pending)
    return "signalled", {
        "kind": kind,
        "sent": total,
        "ok": len(calls),
        "seconds": sent_for,
        "rate": total / sent_for if sent_for > 0 else float("nan"),
        "errors": errors,
        "most_in_flight": most,
        "lag_ms": summary(lags),
        "call_ms": summary(calls),
    }


async def throughput(args: list[str]) -> tuple[str, Any]:
    seconds, concurrency = float(args[0]), int(args[1])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    starts: list[float] = []
    signals: list[float] = []
    errors: dict[str, int] = {}

    async def loop_calls() -> None:
        while loop.time() < deadline:
            began = time.perf_counter()
            try:
                handle = await astart(BenchFlows, "hold")
                started = time.perf_counter()
                await asignal(handle, {"t": time.time(), "seq": 0})
            except FlowError as exc:
                errors[_error_name(exc)] = errors.get(_error_name(exc), 0) + 1
                continue
            starts.append((started - began) * 1000)
            signals.append((time.perf_counter() - started) * 1000)

    began = loop.time()
    await asyncio.gather(*(loop_calls() for _ in range(concurrency)))
    took = loop.time() - began
    return "throughput", {
        "done": len(starts),
        "seconds": took,
        "per_second": len(starts) / took,
        "errors": errors,
        "start_ms": summary(starts),
        "signal_ms": summary(signals),
    }


async def main() -> None:
    await serve({"start": start, "signal": signal, "throughput": throughput})


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        answer("interrupted")
