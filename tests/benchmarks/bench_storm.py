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
- **Head-of-line**: ``--dead`` flows are started on one worker, which is then
  killed with SIGKILL; with ``--dead`` calls pending to them (and as many to
  ids that never existed), a live flow on the other worker is signalled again
  and again, and subscribed to over daphne again and again (a real
  ``websockets`` client) while as many dead subscriptions wait for their
  snapshot. Figures: the live call's and the live snapshot's time, alone and
  behind the dead ones.

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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from caravela_flow import aget_state, asignal, astart, astop, subscription_url  # noqa: E402
from tests.benchmarks._common import percentile  # noqa: E402
from tests.flowapp.flows import WorkerFlows, increment  # noqa: E402
from tests.storm_child import collect, start_senders  # noqa: E402
from tests.worker_support import (  # noqa: E402
    Daphne,
    RedisServer,
    WorkerPool,
    flows_on,
    queued,
    unique_prefix,
    worker_mode,
)

#: The head-of-line figures' bound: a live call or snapshot "in its usual time".
HEAD_OF_LINE_BOUND = 1.0


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


def spread(times: list[float]) -> str:
    ordered = sorted(times)
    return (
        f"median {percentile(ordered, 50) * 1000:.0f} ms, "
        f"max {ordered[-1] * 1000:.0f} ms ({len(ordered)} samples)"
    )


async def head_of_line(server: RedisServer, logs: Path, dead_count: int, what: str) -> bool:
    """Print one head-of-line figure ("calls" or "snapshots"); → whether the live one kept up."""
    import uuid

    from websockets.asyncio.client import connect

    prefix = unique_prefix(f"bench-head-of-line-{what}")
    with WorkerPool(server.url, prefix, logs) as pool:
        victim, survivor = pool.spawn(2)
        daphne = Daphne(server.url, prefix, logs)
        try:
            with worker_mode(server.url, prefix, REQUEST_TIMEOUT=10):
                dead, live = await flows_on(victim, survivor, dead_count)

                async def signal_time() -> float:
                    begun = time.monotonic()
                    await asignal(live, increment)
                    return time.monotonic() - begun

                async def snapshot_time() -> float:
                    begun = time.monotonic()
                    url = daphne.url(subscription_url(live))
                    async with connect(url, origin=daphne.origin) as socket:
                        await asyncio.wait_for(socket.recv(), 20)
                    return time.monotonic() - begun

                measure = signal_time if what == "calls" else snapshot_time
                alone = [await measure() for _ in range(20)]
                victim.kill()
                calls: list[asyncio.Future[Any]] = []
                sockets: list[Any] = []
                if what == "calls":
                    never = [uuid.uuid4().hex for _ in range(dead_count)]
                    calls += [asyncio.create_task(asignal(i, increment)) for i in dead]
                    calls += [asyncio.create_task(aget_state(i)) for i in never]
                else:

                    async def subscribe(flow_id: str) -> None:
                        url = daphne.url(subscription_url(flow_id))
                        sockets.append(await connect(url, origin=daphne.origin))

                    calls.append(asyncio.gather(*(subscribe(i) for i in dead)))
                sent = asyncio.create_task(queued(server.url, prefix, victim, dead_count))
                behind: list[float] = []
                while not sent.done() or len(behind) < 20:
                    behind.append(await measure())
                await sent
                for call in calls:
                    call.cancel()
                await asyncio.gather(*calls, return_exceptions=True)
                for socket in sockets:
                    await socket.close()
        finally:
            daphne.stop()
    if what == "calls":
        print(f"head-of-line: {dead_count} calls pending to flows of a killed worker")
        print(f"  (for up to 10 s each), and {dead_count} reads of ids that never existed")
        print(f"  live signal alone:       {spread(alone)}")
        print(f"  live signal behind them: {spread(behind)}")
    else:
        print(f"head-of-line: {dead_count} subscriptions to flows of a killed worker")
        print(f"  live snapshot over a socket alone:       {spread(alone)}")
        print(f"  live snapshot over a socket behind them: {spread(behind)}")
    print(f"  (bound {HEAD_OF_LINE_BOUND:g} s)")
    return max(behind) < HEAD_OF_LINE_BOUND


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--senders", type=int, default=3, help="sender processes (default 3)")
    parser.add_argument("--signals", type=int, default=7000, help="signals each (default 7000)")
    parser.add_argument("--in-flight", type=int, default=50, help="per sender (default 50)")
    parser.add_argument("--dead", type=int, default=60, help="dead calls (default 60)")
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
            for what in ("calls", "snapshots"):
                passed &= asyncio.run(head_of_line(server, logs, args.dead, what))
        finally:
            server.stop()
    if args.strict and not passed:
        sys.exit(1)


if __name__ == "__main__":
    main()
