"""Worker mode fault timings: adoption after kill -9, reachability after a Redis restart.

Real parts, all started here and stopped at the end: a private
``redis-server`` (no persistence) on a free port and ``runworker`` processes
with ``LEASE_SECONDS`` = ``--lease``, driven from this process in worker mode
(``tests.settings``).

- **Adoption**: ``--flows`` flows are started over two workers, a subscriber
  joins each flow's group, one worker is killed with SIGKILL; the figure is the
  time from the kill to the adoption ``flow.state`` of each of its flows (first,
  median, last), next to the promised bound of 2 x lease.
- **Redis restart**: the same number of flows run on two workers; Redis is
  stopped and started empty on the same port; the figure is the time from
  Redis answering to every flow answering ``get_state`` with its state intact,
  next to the promised 10 s.

Each is repeated ``--runs`` times. Usage::

    .venv/bin/python tests/benchmarks/bench_faults.py [--lease 5] [--flows 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from caravela_flow import aget_state, asignal, astart  # noqa: E402
from caravela_flow.groups import flow_group  # noqa: E402
from tests.flowapp.flows import WorkerFlows, increment  # noqa: E402
from tests.worker_support import (  # noqa: E402
    RedisServer,
    Subscriber,
    Worker,
    WorkerPool,
    bounded,
    unique_prefix,
    worker_mode,
)


async def hosted(worker: Worker) -> set[str]:
    async with Subscriber() as subscriber:
        return {f["id"] for f in await subscriber.hosted(worker)}


async def adoption(server: RedisServer, logs: Path, lease: float, flows: int) -> list[float]:
    """Seconds from kill -9 to each lost flow's adoption announcement."""
    prefix = unique_prefix("bench-adopt")
    with WorkerPool(server.url, prefix, logs) as pool:
        victim, _ = pool.spawn(2, CARAVELA_FLOW_LEASE_SECONDS=str(lease))
        with worker_mode(server.url, prefix, LEASE_SECONDS=lease, REQUEST_TIMEOUT=30):
            await bounded([lambda: astart(WorkerFlows, "hold")] * flows, 20)
            lost = await hosted(victim)
            async with Subscriber() as subscriber:
                for flow_id in lost:
                    await subscriber.join(flow_group(flow_id))
                victim.kill()
                killed = time.monotonic()
                times = []
                # Awaited in turn: an announcement already received counts when it is
                # looked at, so each figure is an upper bound (exact for the last).
                for flow_id in lost:
                    await subscriber.wait_for(
                        lambda m, i=flow_id: m["type"] == "flow.state" and m["flow_id"] == i,
                        timeout=10 * lease + 30,
                    )
                    times.append(time.monotonic() - killed)
            return sorted(times)


async def redis_restart(logs: Path, lease: float, flows: int) -> tuple[float, float]:
    """(seconds to the first flow answering, seconds to all) after Redis answers again."""
    server = RedisServer(logs)
    prefix = unique_prefix("bench-restart")
    try:
        with WorkerPool(server.url, prefix, logs) as pool:
            pool.spawn(2, CARAVELA_FLOW_LEASE_SECONDS=str(lease))
            with worker_mode(server.url, prefix, LEASE_SECONDS=lease, REQUEST_TIMEOUT=60):
                handles = await bounded([lambda: astart(WorkerFlows, "hold")] * flows, 20)
                await bounded([lambda h=h: asignal(h, increment) for h in handles], 20)
                server.stop()
                server = RedisServer(logs, port=server.port)
                back = time.monotonic()
                answered: list[float] = []

                async def read(handle: object) -> None:
                    state = await aget_state(handle)  # type: ignore[arg-type]
                    assert state["count"] == 1, state
                    answered.append(time.monotonic() - back)

                await bounded([lambda h=h: read(h) for h in handles], 20)
                return min(answered), max(answered)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lease", type=float, default=5.0, help="LEASE_SECONDS (default 5)")
    parser.add_argument("--flows", type=int, default=100, help="flows per run (default 100)")
    parser.add_argument("--runs", type=int, default=3, help="repeats (default 3)")
    parser.add_argument("--quick", action="store_true", help="lease 1 s, 20 flows, 1 run")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a bound is missed")
    args = parser.parse_args()
    if args.quick:
        args.lease, args.flows, args.runs = 1.0, 20, 1
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"lease {args.lease:g} s, {args.flows} flows over 2 workers, {args.runs} runs")
    missed = False
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        logs = Path(tmp)
        server = RedisServer(logs)
        try:
            for run in range(1, args.runs + 1):
                times = asyncio.run(adoption(server, logs, args.lease, args.flows))
                bound = 2 * args.lease
                missed |= times[-1] > bound
                print(
                    f"run {run}: kill -9 → adopted ({len(times)} flows): first {times[0]:.2f} s, "
                    f"median {statistics.median(times):.2f} s, last {times[-1]:.2f} s "
                    f"(bound 2 x lease = {bound:g} s)"
                )
        finally:
            server.stop()
        for run in range(1, args.runs + 1):
            first, last = asyncio.run(redis_restart(logs, args.lease, args.flows))
            missed |= last > 10
            print(
                f"run {run}: Redis restarted empty → reachable: first {first:.2f} s, "
                f"all {args.flows} {last:.2f} s (bound 10 s)"
            )
    if args.strict and missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
