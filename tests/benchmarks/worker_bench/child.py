"""Plumbing of the benchmark's client processes: commands on stdin, answers on stdout.

The orchestrator writes one command per line; a child answers each with one
line ``@@ <tag> <json>``. End of input means ``quit``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[list[str]], Awaitable[tuple[str, Any]]]


def answer(tag: str, payload: Any = None) -> None:
    """Print the answer line the orchestrator waits for."""
    print(f"@@ {tag} {json.dumps(payload)}", flush=True)


def percentile(ordered: list[float], q: float) -> float:
    """The ``q``-th percentile (0 to 100) of sorted values, linearly interpolated."""
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of ``values`` (any order)."""
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": ordered[-1] if ordered else float("nan"),
    }


async def serve(handlers: dict[str, Handler]) -> None:
    """Run commands from stdin, one at a time, until ``quit`` or end of input."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "quit")

    threading.Thread(target=read, name="commands", daemon=True).start()
    answer("ready")
    while True:
        words = (await lines.get()).split()
        if not words:
            continue
        if words[0] == "quit":
            return
        handler = handlers.get(words[0])
        if handler is None:
            answer("error", f"unknown command {words[0]!r}")
            continue
        try:
            tag, payload = await handler(words[1:])
        except Exception as exc:
            answer("error", f"{words[0]}: {type(exc).__name__}: {exc}")
            continue
        answer(tag, payload)
