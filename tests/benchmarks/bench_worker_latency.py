"""Worker mode: signal → WebSocket latency against a bare channels-redis baseline,
and start+signal throughput, on a real stack.

The stack, all subprocesses started here and stopped at the end (also on
Ctrl-C or an error): a private ``redis-server`` (no persistence) on a free
port, ``--workers`` times ``manage.py runworker caravela-flows bench-raw``, one
``daphne`` serving ``worker_bench.asgi``, a signalling process
(``worker_bench.driver``) and a WebSocket-client process
(``worker_bench.wsclient``), all with ``REDIS_URL``, ``CARAVELA_FLOW_MODE=worker``
and a fresh ``CARAVELA_FLOW_REDIS_PREFIX``. The signaller and the WebSocket
client are separate processes, so neither's event loop delays the other.

Latency: ``--flows`` flows of ``repeat(wait_until(lambda s: False))`` are
started, and the client opens one WebSocket per flow
(``subscription_url(handle)``, ``Origin: http://127.0.0.1``). The signaller
sends ``--rate`` signals a second for ``--seconds``, round-robin over the
flows, each ``asignal(handle, {"t": time.time(), "seq": i})``; the client
takes ``time.time() - state["t"]`` for every ``state`` event it receives.

Baseline, same stack, rate, timestamps and sockets: the signaller does a bare
``layer.send("bench-raw", …)``; a bare ``AsyncConsumer`` in the same
runworkers ``group_send``s a ``flow.state`` (per-flow version from 10**6 up,
above any real one) to the flow's group, and the same ``FlowConsumer``
forwards it. Each variant has a one-second warm-up that is not sampled.

Throughput: as many ``astart`` + one ``asignal`` as possible, 50 at a time,
for ``--throughput-seconds``. Per-process CPU (``/proc/<pid>/stat``) is
measured over every phase, so the busiest process names the bottleneck.

Targets: ours p50 ≤ 1.25 x baseline p50, ours p99 ≤ 25 ms.

Run from the repository root (needs ``redis-server``):

    .venv/bin/python tests/benchmarks/bench_worker_latency.py [--quick] [--workers 1 2]
        [--flows 1000] [--rate 1000] [--seconds 10] [--py-spy DIR] [--strict]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

os.environ["DJANGO_SETTINGS_MODULE"] = "worker_bench.settings"

import _common  # sets up Django with the settings above
from worker_bench.stack import CpuMeter, CpuReport, Stack

TARGET_P50_RATIO = 1.25
TARGET_P99_MS = 25.0
#: Share of the signals whose ``state`` must reach the WebSockets for the latency to count.
DELIVERY_TARGET = 0.99
CONCURRENCY = 50
WARM_UP_SECONDS = 1.0
#: Signals in flight at most; past it the signaller waits (and its send lag shows it).
MAX_IN_FLIGHT = 1_000
#: Seconds without a new message after which the WebSocket client stops waiting.
QUIET_SECONDS = 2.0


def arguments() -> Any:
    parser = _common.parser(__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--flows", type=int, help="flows and WebSockets (default 1,000)")
    parser.add_argument("--rate", type=float, help="signals per second (default 1,000)")
    parser.add_argument("--seconds", type=float, help="seconds of signals (default 10)")
    parser.add_argument(
        "--throughput-seconds", type=float, help="seconds of start+signal (default 5)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", help="runworker counts to run (default 1 2)"
    )
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        type=Path,
        help="profile each Python process with py-spy during the measured ours phase",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the children's logs")
    args = parser.parse_args()
    quick = args.quick
    args.flows = args.flows or (100 if quick else 1_000)
    args.rate = args.rate or (100.0 if quick else 1_000.0)
    args.seconds = args.seconds or (3.0 if quick else 10.0)
    args.throughput_seconds = args.throughput_seconds or (3.0 if quick else 5.0)
    args.workers = args.workers or [1, 2]
    return args


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def samples(path: Path, baseline: bool) -> list[float]:
    with path.open() as source:
        return sorted(latency for latency, raw in json.load(source) if raw == baseline)


def stats(ordered: list[float]) -> dict[str, float]:
    pct = _common.percentile
    return {
        "p50": pct(ordered, 50),
        "p90": pct(ordered, 90),
        "p99": pct(ordered, 99),
        "max": ordered[-1] if ordered else float("nan"),
    }


def cpu_table(
    title: str, report: CpuReport, per: int = 0, unit: str = "", capacity: bool = False
) -> None:
    """Print the CPU table; ``capacity``: also the rate idle cores could sustain at that cost."""
    print(
        f"   CPU during {title} ({report.wall:.1f} s; load average "
        f"{report.load[0]:.2f} → {report.load[1]:.2f}):"
    )
    headers = ["process", "CPU s", "% of a core"]
    if per:
        headers.append(f"CPU ms/{unit}")
    print(_indent(_common.table(headers, report.rows(per))))
    busiest, share = report.busiest()
    line = f"     busiest: {busiest} at {share:.0f} % of a core"
    if per and capacity:
        cores = os.cpu_count() or 1
        cost = 1000 * report.ours / per
        line += (
            f"; the stack spends {cost:.1f} CPU ms per {unit}, so {cores} idle cores "
            f"could do at most ~{1000 * cores / cost:,.0f} {unit}s/s"
        )
    print(line)


def _indent(text: str, by: str = "     ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def start_py_spy(stack: Stack, seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("   py-spy not found (pip install py-spy into .venv); not profiling")
        return []
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in stack.processes().items():
        if name == "redis":
            continue
        target = out / f"{stack.worker_count}w-{name.replace(' ', '')}.txt"
        args = [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds) + 1)]
        args += ["--rate", "200", "--format", "raw", "--nonblocking", "--output", str(target)]
        spies.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


#: Packages whose frames the py-spy summary shows by inclusive time.
PROFILED = ("caravela_flow/", "channels_redis/", "channels/", "daphne/", "worker_bench/")


def summarize_py_spy(out: Path, workers: int, top: int = 10) -> None:
    """Per process: where the non-idle samples were (own time, and inclusive by package)."""
    for path in sorted(out.glob(f"{workers}w-*.txt")):
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        busy = 0
        with path.open() as source:
            for line in source:
                stack, _, count = line.rstrip().rpartition(" ")
                if not count.isdigit():
                    continue
                frames = stack.split(";")
                if "select (selectors.py" in frames[-1]:
                    continue  # the event loop waiting: idle
                busy += int(count)
                own[frames[-1]] += int(count)
                for frame in set(frames):
                    if any(package in frame for package in PROFILED):
                        inclusive[frame] += int(count)
        if not busy:
            continue
        print(f"   py-spy {path.stem}: {busy} busy samples (200/s); most own time:")
        for frame, count in own.most_common(top):
            print(f"     {100 * count / busy:5.1f} %  {frame[:110]}")
        print("     inclusive, by function of caravela_flow / channels / daphne:")
        for frame, count in inclusive.most_common(top):
            print(f"     {100 * count / busy:5.1f} %  {frame[:110]}")


def latency_phase(stack: Stack, kind: str, args: Any, work: Path) -> dict[str, Any]:
    """Warm up, then send ``args.rate`` signals a second for ``args.seconds``; sample them."""
    driver, client = stack.driver, stack.wsclient
    timeout = args.seconds + 120
    client.command("reset", "reset", 30)
    line = f"signal {kind} {args.rate:g} {{}} {MAX_IN_FLIGHT}"
    warm = driver.command(line.format(f"{WARM_UP_SECONDS:g}"), "signalled", timeout)
    client.command(f"drain {warm['ok']} {QUIET_SECONDS:g} 30", "drained", 60)
    client.command("reset", "reset", 30)
    calls_before = stack.redis_calls()
    spies = []
    if args.py_spy is not None and kind == "ours":
        spies = start_py_spy(stack, args.seconds, args.py_spy)
    meter = CpuMeter(stack)
    sent = driver.command(line.format(f"{args.seconds:g}"), "signalled", timeout)
    client.command(f"drain {sent['ok']} {QUIET_SECONDS:g} 60", "drained", 90)
    cpu = meter.stop()
    for spy in spies:
        spy.wait(60)
    calls_after = stack.redis_calls()
    path = work / f"{stack.worker_count}w-{kind}.json"
    dumped = client.command(f"dump {path}", "dumped", 60)
    ordered = samples(path, baseline=kind == "raw")
    return {
        "kind": kind,
        "sent": sent,
        "received": len(ordered),
        "dumped": dumped,
        "latency": stats(ordered),
        "cpu": cpu,
        "redis_calls": {
            name: count - calls_before.get(name, 0)
            for name, count in calls_after.items()
            if count > calls_before.get(name, 0)
        },
    }


def run_stack(workers: int, args: Any, work: Path) -> dict[str, Any]:
    label = f"{workers} worker{'s' if workers > 1 else ''}"
    print(f"-- {label}: starting the stack (load average {load()})")
    with Stack(workers, work) as stack:
        urls = work / f"{workers}w-urls.json"
        started = stack.driver.command(
            f"start {args.flows} {CONCURRENCY} {urls}", "started", args.flows / 5 + 120
        )
        connected = stack.wsclient.command(
            f"connect {stack.web_base} {urls} {CONCURRENCY}", "connected", args.flows / 5 + 120
        )
        print(
            f"   {started['started']:,} flows started in {started['seconds']:.1f} s "
            f"(errors {started['errors'] or 'none'}); {connected['open']:,} WebSockets open "
            f"in {connected['seconds']:.1f} s (failures {connected['failures'] or 'none'})"
        )
        phases = {kind: latency_phase(stack, kind, args, work) for kind in ("ours", "raw")}
        print(
            f"   latency, signal → WebSocket (ms), {args.rate:,.0f} signals/s for "
            f"{args.seconds:g} s over {started['started']:,} flows (load average {load()}):"
        )
        rows = []
        for kind, phase in phases.items():
            sent, lat = phase["sent"], phase["latency"]
            rows.append(
                [
                    "ours (asignal)" if kind == "ours" else "baseline (bare send)",
                    sent["sent"],
                    phase["received"],
                    sum(sent["errors"].values()),
                    lat["p50"],
                    lat["p90"],
                    lat["p99"],
                    lat["max"],
                    sent["rate"],
                    sent["lag_ms"]["p99"],
                    sent["call_ms"]["p50"],
                    sum(phase["redis_calls"].values()) / sent["sent"],
                ]
            )
        headers = ["path", "sent", "received", "errors", "p50", "p90", "p99", "max"]
        headers += ["sent/s", "send lag p99", "call p50", "redis cmds/signal"]
        print(_indent(_common.table(headers, rows)))
        for kind, phase in phases.items():
            per_signal = {
                name: count / phase["sent"]["sent"]
                for name, count in sorted(phase["redis_calls"].items())
            }
            print(
                f"   Redis commands per signal, {'ours' if kind == 'ours' else 'baseline'}: "
                + ", ".join(f"{name} {count:.2f}" for name, count in per_signal.items())
            )
        ours, base = phases["ours"]["latency"], phases["raw"]["latency"]
        print(
            f"   ratio ours/baseline: p50 {ours['p50'] / base['p50']:.2f}, "
            f"p90 {ours['p90'] / base['p90']:.2f}, p99 {ours['p99'] / base['p99']:.2f}"
        )
        for kind, phase in phases.items():
            title = "ours" if kind == "ours" else "the baseline"
            # Per delivered signal: a signal that timed out cost little and did nothing.
            whole = phase["received"] >= DELIVERY_TARGET * phase["sent"]["sent"]
            cpu_table(title, phase["cpu"], phase["received"], "delivered signal", whole)
        if args.py_spy is not None:
            summarize_py_spy(args.py_spy, workers)
        meter = CpuMeter(stack)
        result = stack.driver.command(
            f"throughput {args.throughput_seconds:g} {CONCURRENCY}",
            "throughput",
            args.throughput_seconds + 120,
        )
        thr_cpu = meter.stop()
        spread = [w.count(r"started flow [0-9a-f]{32}") for w in stack.workers]
        print(
            f"   start+signal throughput, {CONCURRENCY} at a time for "
            f"{args.throughput_seconds:g} s: {result['per_second']:,.0f} flows/s "
            f"({result['done']:,} done, errors {result['errors'] or 'none'}; start p50 "
            f"{result['start_ms']['p50']:.1f} ms p99 {result['start_ms']['p99']:.1f} ms, "
            f"signal p50 {result['signal_ms']['p50']:.1f} ms; flows started per worker, "
            f"all phases: {spread})"
        )
        cpu_table("start+signal", thr_cpu, result["done"], "flow", True)
        print()
    return {"label": label, "phases": phases, "throughput": result, "throughput_cpu": thr_cpu}


def main() -> int:
    args = arguments()
    # SIGTERM ends the run like Ctrl-C: the stack's children are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _common.banner("Worker mode: signal → WebSocket latency, and start+signal throughput")
    work = Path(tempfile.mkdtemp(prefix="caravela-worker-bench-"))
    results = []
    try:
        for workers in args.workers:
            results.append(run_stack(workers, args, work))
    finally:
        if args.keep_logs:
            print(f"   logs and samples kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("== Summary")
    passed = bool(results)
    for result in results:
        label = result["label"]
        ours_phase, base_phase = result["phases"]["ours"], result["phases"]["raw"]
        ours, base = ours_phase["latency"], base_phase["latency"]
        delivered = {
            kind: phase["received"] / phase["sent"]["sent"]
            for kind, phase in result["phases"].items()
        }
        # Percentiles are over the messages that arrived: they mean little if many did not.
        delivery_ok = delivered["ours"] >= DELIVERY_TARGET
        ratio_ok = delivery_ok and ours["p50"] <= TARGET_P50_RATIO * base["p50"]
        p99_ok = delivery_ok and ours["p99"] <= TARGET_P99_MS
        passed = passed and delivery_ok and ratio_ok and p99_ok
        print(
            f"   {_common.verdict(delivery_ok)}  {label}: ours delivered "
            f"{100 * delivered['ours']:.1f} % of its signals to the WebSockets "
            f"(≥ {100 * DELIVERY_TARGET:g} %; baseline {100 * delivered['raw']:.1f} %)"
        )
        print(
            f"   {_common.verdict(ratio_ok)}  {label}: ours p50 {ours['p50']:.2f} ms ≤ "
            f"{TARGET_P50_RATIO} x baseline p50 {base['p50']:.2f} ms "
            f"(ratio {ours['p50'] / base['p50']:.2f})"
        )
        print(f"   {_common.verdict(p99_ok)}  {label}: ours p99 {ours['p99']:.2f} ms ≤ 25 ms")
        if delivered["raw"] < DELIVERY_TARGET:
            print(
                f"         the baseline too lost signals at {args.rate:,.0f}/s: "
                "the stack is over its capacity on this machine (see the CPU tables)"
            )
    for result in results:
        print(
            f"   {result['label']}: start+signal {result['throughput']['per_second']:,.0f} flows/s"
        )
    return _common.exit_status(passed, args.strict)


if __name__ == "__main__":
    sys.exit(main())
