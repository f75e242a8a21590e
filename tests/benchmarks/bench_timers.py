"""Timer lateness with many active flows, against bare tasks sleeping in a loop.

``--flows`` flows run at once, half in ``repeat(set_state(mark), wait(D),
set_state(record))`` and half with ``debounce(D)`` in place of the wait, with
D spread over 50 to 500 ms (5 ms steps, one flow definition per D). ``mark``
notes the due time (the loop's clock + D) when the timer step starts;
``record`` takes the loop's clock when the flow continues after it; the
difference is how late the timer fired, as the flow sees it. Neither changes
the state, so no message is sent: this isolates timers and the runner.

A second run does the same with ``record`` counting ticks in the state, so
every tick also sends a ``flow.state`` to the flow's group (InMemoryChannelLayer
under the default settings), as a flow that does something would.

Baseline: as many bare tasks doing ``due = now + D; await asyncio.sleep(D);
late = now - due`` in a loop, same D spread and start schedule. Starts are
spread over the first 500 ms; samples are taken over ``--seconds`` after a
warm-up second.

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_timers.py [--flows 10000] [--seconds 10] [--quick]
"""

from __future__ import annotations

import asyncio
import gc
import random
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import _common

from caravela_flow import Flows, astart, astop, debounce, flow, repeat, set_state, wait
from caravela_flow.supervisor import supervisor
from caravela_flow.types import State

TARGET_P99_MS = 5.0
DURATIONS_MS = tuple(range(50, 501, 5))
START_SPREAD = 0.5  # seconds over which starts are spread
WARM_UP = 1.0  # seconds after the last start before sampling


@dataclass
class Clock:
    """The sampling window and where samples go (set per run)."""

    now: Callable[[], float] = time.monotonic
    opens: float = float("inf")
    closes: float = float("inf")
    due: list[float] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)

    def sample(self, kind: str, index: int) -> None:
        now = self.now()
        if self.opens <= now < self.closes:
            self.samples[kind].append(now - self.due[index])


clock = Clock()


class GcWatch:
    """Garbage-collector pauses while the sampling window is open."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif clock.opens <= clock.now() < clock.closes:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def summary(self) -> str:
        if not self.pauses:
            return "none"
        full = sum(1 for generation, _ in self.pauses if generation == 2)
        longest = max(seconds for _, seconds in self.pauses) * 1000
        total = sum(seconds for _, seconds in self.pauses) * 1000
        return f"{len(self.pauses)} ({full} full), longest {longest:.1f} ms, total {total:.0f} ms"


def _mark(state: State) -> State:
    clock.due[state["i"]] = clock.now() + state["d"] / 1000
    return state


def _record(state: State) -> State:
    clock.sample(state["kind"], state["i"])
    return state


def _record_and_tick(state: State) -> State:
    clock.sample(state["kind"], state["i"])
    return {**state, "ticks": state.get("ticks", 0) + 1}


def _timer_flows() -> type[Flows]:
    attrs: dict[str, Any] = {"__module__": __name__, "__qualname__": "TimerFlows"}
    for ms in DURATIONS_MS:
        for kind, step in (("wait", wait(ms)), ("debounce", debounce(ms))):
            for suffix, record in (("", _record), ("_publish", _record_and_tick)):
                attrs[f"{kind}{suffix}_{ms}"] = flow(
                    repeat(set_state(_mark), step, set_state(record)),
                    initial_state={"i": 0, "d": ms, "kind": kind},
                )
    return type("TimerFlows", (Flows,), attrs)


TimerFlows: type[Flows] = Flows  # built in main(), once the durations are known


@dataclass
class Run:
    name: str
    samples: dict[str, list[float]]
    seconds: float
    cpu: float
    expected: float  # timer firings expected in the window if none were late
    gc: str = ""

    @property
    def fired(self) -> int:
        return sum(len(values) for values in self.samples.values())

    @property
    def cpu_per_firing_us(self) -> float:
        return self.cpu / self.fired * 1e6 if self.fired else float("nan")

    def rows(self) -> list[tuple[Any, ...]]:
        everything = sorted(x for values in self.samples.values() for x in values)
        rows = [
            (
                self.name,
                self.fired / self.seconds,
                f"{self.fired / self.expected:.0%}",
                *self._percentiles(everything),
                f"{self.cpu / self.seconds:.0%}",
                self.cpu_per_firing_us,
            )
        ]
        if len(self.samples) > 1:
            for kind, values in self.samples.items():
                row = (f"  {kind}", len(values) / self.seconds, "")
                rows.append((*row, *self._percentiles(sorted(values)), "", None))
        return rows

    @staticmethod
    def _percentiles(ordered: list[float]) -> tuple[float, ...]:
        ms = [x * 1000 for x in ordered]
        p = _common.percentile
        return (p(ms, 50), p(ms, 90), p(ms, 99), ms[-1] if ms else float("nan"))

    @property
    def p99_ms(self) -> float:
        everything = sorted(x for values in self.samples.values() for x in values)
        return _common.percentile(everything, 99) * 1000


def _plan(count: int) -> list[tuple[int, str, float]]:
    """(D ms, kind, start delay s) for each flow or task, the same for every run."""
    rng = random.Random(20_250_101)
    kinds = ("wait", "debounce")
    return [
        (rng.choice(DURATIONS_MS), kinds[i % 2], rng.uniform(0, START_SPREAD)) for i in range(count)
    ]


async def _sample_window(
    name: str, plan: list[tuple[int, str, float]], seconds: float, start_all: Callable[[], Any]
) -> Run:
    loop = asyncio.get_running_loop()
    clock.now = loop.time
    clock.due = [0.0] * len(plan)
    clock.samples = {kind: [] for kind in sorted({kind for _, kind, _ in plan})}
    clock.opens = clock.closes = float("inf")
    watch = GcWatch()
    gc.callbacks.append(watch)
    try:
        stop = await start_all()
        clock.opens = loop.time() + START_SPREAD + WARM_UP
        clock.closes = clock.opens + seconds
        await asyncio.sleep(clock.opens - loop.time())
        cpu = _common.cpu_seconds()
        await asyncio.sleep(clock.closes - loop.time())
        cpu = _common.cpu_seconds() - cpu
        await asyncio.sleep(0.6)  # timers due in the window report after it closes
        await stop()
    finally:
        gc.callbacks.remove(watch)
    expected = sum(seconds / (ms / 1000) for ms, _, _ in plan)
    return Run(name, clock.samples, seconds, cpu, expected, watch.summary())


async def run_baseline(plan: list[tuple[int, str, float]], seconds: float) -> Run:
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    async def sleeper(index: int, ms: int, delay: float) -> None:
        await asyncio.sleep(delay)
        d = ms / 1000
        while True:
            clock.due[index] = loop.time() + d
            await asyncio.sleep(d)
            clock.sample("sleep", index)

    async def start_all() -> Callable[[], Coroutine[Any, Any, None]]:
        clock.samples = {"sleep": []}
        for index, (ms, _, delay) in enumerate(plan):
            tasks.append(loop.create_task(sleeper(index, ms, delay)))

        async def stop() -> None:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        return stop

    return await _sample_window("baseline: asyncio.sleep loop", plan, seconds, start_all)


async def run_flows(plan: list[tuple[int, str, float]], seconds: float, publish: bool) -> Run:
    handles: list[Any] = []
    suffix = "_publish" if publish else ""

    async def start_one(index: int, ms: int, kind: str, delay: float) -> None:
        await asyncio.sleep(delay)
        state = {"i": index, "d": ms, "kind": kind}
        handles.append(await astart(TimerFlows, f"{kind}{suffix}_{ms}", state))

    async def start_all() -> Callable[[], Coroutine[Any, Any, None]]:
        starters = [
            start_one(index, ms, kind, delay) for index, (ms, kind, delay) in enumerate(plan)
        ]
        starting = asyncio.gather(*starters)

        async def stop() -> None:
            await starting
            await asyncio.gather(*(astop(h) for h in handles))
            for handle in handles:  # not retained into the next run
                supervisor.forget(handle.id)

        return stop

    name = "flows, a flow.state per tick" if publish else "flows: wait / debounce"
    return await _sample_window(name, plan, seconds, start_all)


def _runs(count: int, seconds: float) -> list[Run]:
    plan = _plan(count)
    return [
        asyncio.run(run_baseline(plan, seconds)),
        asyncio.run(run_flows(plan, seconds, publish=False)),
        asyncio.run(run_flows(plan, seconds, publish=True)),
    ]


def _sweep(counts: list[int], seconds: float) -> None:
    rows = []
    for count in counts:
        print(f"  sweep: {count:,} timers", file=sys.stderr, flush=True)
        baseline, flows, publishing = _runs(count, seconds)
        rows.append(
            (
                count,
                baseline.expected / seconds,
                baseline.p99_ms,
                flows.p99_ms,
                publishing.p99_ms,
                baseline.cpu_per_firing_us,
                flows.cpu_per_firing_us,
                publishing.cpu_per_firing_us,
            )
        )
    print(f"Sweep over the number of timers ({seconds:g} s windows):")
    headers = [
        "timers",
        "due firings/s",
        "p99 ms: baseline",
        "flows",
        "flows+state",
        "CPU µs/firing: baseline",
        "flows",
        "flows+state",
    ]
    print(_common.table(headers, rows))
    print()


def main() -> int:
    parser = _common.parser("Timer lateness with many active flows, against bare tasks.")
    parser.add_argument("--flows", type=int, default=None, help="flows (default 10,000)")
    parser.add_argument("--seconds", type=float, default=None, help="sampling window (10 s)")
    parser.add_argument(
        "--sweep",
        type=lambda text: [int(x) for x in text.split(",")],
        default=None,
        metavar="N,N,...",
        help="afterwards, also measure these numbers of timers (p99 and CPU per firing)",
    )
    parser.add_argument(
        "--durations",
        type=lambda text: tuple(int(x) for x in text.split(",")),
        default=(50, 500),
        metavar="MIN,MAX",
        help="range of D in ms (default 50,500: with 10,000 flows that is ~36,000 "
        "firings/s, more than bare asyncio keeps on time on 2 cores)",
    )
    args = parser.parse_args()
    global DURATIONS_MS, TimerFlows
    low, high = args.durations
    DURATIONS_MS = tuple(range(low, high + 1, max(5, (high - low) // 90)))
    TimerFlows = _timer_flows()
    count = args.flows or (1_000 if args.quick else 10_000)
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    _common.banner(
        f"bench_timers: {count:,} timers (D in {low}-{high} ms), {seconds:g} s sampling window"
    )
    runs = _runs(count, seconds)

    headers = ["run", "firings/s", "of due", "p50 ms", "p90 ms", "p99 ms", "max ms", "CPU"]
    headers.append("CPU µs/firing")
    rows = [row for run in runs for row in run.rows()]
    print(_common.table(headers, rows))
    print()
    for run in runs:
        print(f"GC pauses in the window, {run.name}: {run.gc}")
    print(
        "Lateness = the loop's clock when the code after the timer runs, minus the due time.\n"
        "of due = firings sampled / firings due in the window had none been late.\n"
        "CPU = process CPU time / wall time over the window (one loop thread: 100% = saturated)."
    )
    print()
    baseline = runs[0].p99_ms
    passed = True
    verdicts = []
    for run in runs[1:]:
        ok = run.p99_ms <= TARGET_P99_MS
        passed = passed and ok
        verdicts.append(
            (
                run.name,
                baseline,
                run.p99_ms,
                run.p99_ms / baseline if baseline > 0 else float("nan"),
                f"<= {TARGET_P99_MS:g} ms",
                _common.verdict(ok),
            )
        )
    headers = ["run", "baseline p99 ms", "p99 ms", "ratio", "target", "result"]
    print(_common.table(headers, verdicts))
    print()
    if args.sweep:
        _sweep(args.sweep, seconds)
    return _common.exit_status(passed, args.strict)


if __name__ == "__main__":
    sys.exit(main())
