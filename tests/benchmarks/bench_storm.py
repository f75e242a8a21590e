"""Worker mode under load and beside dead flows: a signal storm, head-of-line, a stalled socket.

Real parts, all started here and stopped at the end: a private
``redis-server`` on a free port, two ``runworker`` processes and (for the
snapshot and socket figures) daphne, driven from this process in worker mode
(``tests.settings``).

- **Storm**: ``--senders`` separate processes each send ``--signals``
  ``increment`` signals (``--in-flight`` at once each) to one live flow, with
  the default 5 s ``REQUEST_TIMEOUT``. Figures: calls that failed (by error
  type: every one is a false failure, the flow was live), calls applied but
  reported failed (the flow's count minus the successes), throughput and the
  slowest call.

Usage::

    .venv/bin/python tests/benchmarks/bench_storm.py [--quick] [--strict]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from caravela_flow import aget_state, astart, astop  # noqa: E402
from tests.benchmarks._common import percentile  # noqa: E402
from tests.flowapp.flows import WorkerFlows  # noqa: E402
from tests.storm_child import collect, start_senders  # noqa: E402
from tests.worker_support import (  # noqa: E402
    RedisServer,
    WorkerPool,
    unique_prefix,
    worker_mode,
)


async def storm(server: RedisServer, pool: WorkerPool, args: argparse.Namespace) -> bool:
    """Print the storm's figures; → whether no call failed and nothing was applied twice."""
    with worker_mode(server.url, pool.prefix, REQUEST_TIMEOUT=5):
        handle = await astart(WorkerFlows, "hold")
        senders = start_senders(
            server.url, pool.prefix, handle.id, args.signals, args.in_flight, args.senders
        )
        begun = time.monotonic()
        reports = await collect(senders, 600)
        elapsed = time.monotonic() - begun
        count = (await aget_state(handle))["count"]
        await astop(handle)
    sent = args.senders * args.signals
    ok = sum(r["ok"] for r in reports)
    errors: dict[str, int] = {}
    for report in reports:
        for name, n in report["errors"].items():
            errors[name] = errors.get(name, 0) + n
    latencies = sorted(t for r in reports for t in r["latencies"])
    print(
        f"storm: {args.senders} processes x {args.signals:,} signals ({args.in_flight} in flight "
        f"each) to one flow: {elapsed:.1f} s, {sent / elapsed:,.0f} signals/s"
    )
    print(f"  succeeded {ok:,} of {sent:,}; failed: {errors or 'none'}")
    for report in reports:
        for example in report["examples"][:2]:
            print(f"    e.g. {example}")
    print(f"  applied but reported failed: {count - ok} (flow count {count:,})")
    if latencies:
        print(
            f"  call latency: median {percentile(latencies, 50) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 99) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
        )
    return not errors and count == ok == sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--senders", type=int, default=3, help="sender processes (default 3)")
    parser.add_argument("--signals", type=int, default=7000, help="signals each (default 7000)")
    parser.add_argument("--in-flight", type=int, default=50, help="per sender (default 50)")
    parser.add_argument("--quick", action="store_true", help="3 x 500 signals")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a bound is missed")
    args = parser.parse_args()
    if args.quick:
        args.signals = 500
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    passed = True
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        logs = Path(tmp)
        server = RedisServer(logs)
        try:
            with WorkerPool(server.url, unique_prefix("bench-storm"), logs) as pool:
                pool.spawn(2)
                passed &= asyncio.run(storm(server, pool, args))
        finally:
            server.stop()
    if args.strict and not passed:
        sys.exit(1)


if __name__ == "__main__":
    main()
