"""A separate OS process that sends many signals to one flow and reports how each ended.

Run as ``python -m tests.storm_child FLOW_ID COUNT IN_FLIGHT`` with the
environment of :func:`tests.worker_support.worker_env`. It prints ``ready``,
waits for a line on stdin (so every sender starts at once), sends ``COUNT``
``increment`` signals with at most ``IN_FLIGHT`` in flight, and prints one
JSON line: ``{"ok": n, "errors": {"ErrorType": n}, "examples": [...],
"seconds": s, "latencies": [...]}`` (latencies of the successful calls, in
seconds, sorted). :func:`start_senders` and :func:`collect` drive it from a
test or a benchmark.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import django

from tests.worker_support import ROOT, worker_env


async def storm(flow_id: str, count: int, in_flight: int) -> dict[str, Any]:
    from caravela_flow import asignal
    from tests.flowapp.flows import increment

    errors: Counter[str] = Counter()
    examples: list[str] = []
    latencies: list[float] = []
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with slots:
            begun = time.monotonic()
            try:
                await asignal(flow_id, increment)
            except Exception as exc:
                errors[type(exc).__name__] += 1
                if len(examples) < 5:
                    examples.append(f"{type(exc).__name__}: {exc}")
            else:
                latencies.append(time.monotonic() - begun)

    begun = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    return {
        "ok": len(latencies),
        "errors": dict(errors),
        "examples": examples,
        "seconds": time.monotonic() - begun,
        "latencies": sorted(latencies),
    }


def start_senders(
    redis_url: str, prefix: str, flow_id: str, count: int, in_flight: int, senders: int
) -> list[subprocess.Popen[str]]:
    """``senders`` sender processes for ``flow_id``, each ready (it has printed ``ready``)."""
    env = worker_env(redis_url, prefix)
    args = [sys.executable, "-m", "tests.storm_child", flow_id, str(count), str(in_flight)]
    started = [
        subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(senders)
    ]
    try:
        for sender in started:
            assert sender.stdout is not None
            line = sender.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a storm sender did not start (it printed {line!r})")
    except BaseException:
        for sender in started:
            sender.kill()
        raise
    return started


async def collect(senders: list[subprocess.Popen[str]], timeout: float) -> list[dict[str, Any]]:
    """Let every sender go at once; → their reports. Senders are killed if still running."""
    try:
        for sender in senders:
            assert sender.stdin is not None
            sender.stdin.write("go\n")
            sender.stdin.flush()
        outputs = await asyncio.gather(
            *(asyncio.to_thread(s.communicate, timeout=timeout) for s in senders)
        )
    finally:
        for sender in senders:
            sender.kill()
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def main() -> None:
    flow_id, count, in_flight = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    django.setup()
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(asyncio.run(storm(flow_id, count, in_flight))), flush=True)


if __name__ == "__main__":
    main()
