"""Memory per idle flow, against bare asyncio tasks awaiting an Event.

Starts ``--flows`` flows with ``astart`` in this process, each blocked in
``wait_until(lambda s: s["go"])`` with a small state, and as many bare tasks
each awaiting its own ``asyncio.Event``. Two passes over the same sizes:

1. RSS (``/proc/self/statm``) with tracemalloc off: baseline tasks first, then
   the flows on top while the tasks stay alive, so each delta is its own.
2. tracemalloc: the same, measuring traced bytes, plus the allocation sites
   that dominate the flows' delta and a per-object anatomy of one flow.

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_memory.py [--flows 100000] [--quick]
"""

from __future__ import annotations

import asyncio
import gc
import linecache
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import _common

from caravela_flow import Flows, astart, astop, flow, wait_until
from caravela_flow.supervisor import supervisor

TARGET_BYTES = 2616


class IdleFlows(Flows):
    idle = flow(
        wait_until(lambda s: s["go"]),
        initial_state={"go": False, "book_id": None},
    )


async def _idle_task(event: asyncio.Event) -> None:
    await event.wait()


@dataclass
class Pass:
    """What one pass measured (bytes, totals over ``n`` units)."""

    n: int
    baseline: int = 0
    flows: int = 0
    start_seconds: float = 0.0
    stop_seconds: float = 0.0
    stats: list[tracemalloc.StatisticDiff] = field(default_factory=list)
    code: dict[tuple[str, int], str] = field(default_factory=dict)
    census: list[tuple[str, float, float]] = field(default_factory=list)


_T0 = time.perf_counter()


def _progress(what: str) -> None:
    print(f"  [{time.perf_counter() - _T0:6.1f} s] {what}", file=sys.stderr, flush=True)


def _is_running(flow_id: str) -> bool:
    return supervisor.get(flow_id).status.value == "running"


async def _settle(ready: Callable[[], bool]) -> None:
    """Let the loop run until ``ready()``, then two more iterations."""
    while not ready():
        await asyncio.sleep(0)
    for _ in range(2):
        await asyncio.sleep(0)


async def _warm_up() -> None:
    # One of each first, so one-time costs (imports, caches, the publisher,
    # dict/free-list growth) stay out of the measured deltas.
    event = asyncio.Event()
    task = asyncio.get_running_loop().create_task(_idle_task(event))
    handle = await astart(IdleFlows, "idle", {"book_id": -1})
    await _settle(lambda: _is_running(handle.id))
    event.set()
    await task
    await astop(handle)
    supervisor.forget(handle.id)


def _census() -> Counter[str]:
    sizes: Counter[str] = Counter()
    for obj in gc.get_objects():
        name = type(obj).__name__
        sizes[name + " count"] += 1
        sizes[name] += sys.getsizeof(obj)
    return sizes


async def _one_pass(n: int, mode: str) -> Pass:
    """``mode``: "rss" (tracemalloc off), "trace" (totals + sites) or "tracebacks"."""
    loop = asyncio.get_running_loop()
    await _warm_up()
    events: list[Any] = [None] * n
    tasks: list[Any] = [None] * n
    handles: list[Any] = [None] * n
    trace = mode != "rss"
    result = Pass(n)

    def sample() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0] if trace else _common.rss_bytes()

    _progress(f"{mode} pass: {n:,} baseline tasks")
    before = sample()
    for i in range(n):
        event = events[i] = asyncio.Event()
        tasks[i] = loop.create_task(_idle_task(event))
    await _settle(lambda: True)
    result.baseline = sample() - before

    snap_before = tracemalloc.take_snapshot() if trace else None
    census_before = _census() if mode == "rss" else None
    before = sample()  # after the snapshot, which stays alive meanwhile
    _progress(f"{mode} pass: {n:,} flows")
    started = time.perf_counter()
    for i in range(n):
        handles[i] = await astart(IdleFlows, "idle", {"go": False, "book_id": i})
    result.start_seconds = time.perf_counter() - started
    await _settle(lambda: all(_is_running(h.id) for h in handles))
    result.flows = sample() - before

    if census_before is not None:
        census = _census()
        census.subtract(census_before)
        result.census = [
            (name, census[name + " count"] / n, census[name] / n)
            for name, _ in census.most_common()
            if not name.endswith(" count") and name != "Counter" and census[name] > 0
        ][:12]
        print_anatomy(handles[0].id, events[0], tasks[0])
    if snap_before is not None:
        snap_after = tracemalloc.take_snapshot()
        tracemalloc.stop()  # grouping millions of traces while tracing is slow
        _progress(f"{mode} pass: grouping the traces")
        group = "lineno" if mode == "trace" else "traceback"
        result.stats = _relevant(snap_after.compare_to(snap_before, group))[:10]
        for stat in result.stats:
            for frame in stat.traceback:
                where = (frame.filename, frame.lineno)
                result.code[where] = linecache.getline(*where).strip()
        del snap_after, snap_before

    _progress(f"{mode} pass: stopping the flows")
    started = time.perf_counter()
    await asyncio.gather(*(astop(h) for h in handles))
    result.stop_seconds = time.perf_counter() - started
    for h in handles:
        supervisor.forget(h.id)
    for event in events:
        event.set()
    await asyncio.gather(*tasks)
    return result


def _relevant(stats: list[tracemalloc.StatisticDiff]) -> list[tracemalloc.StatisticDiff]:
    # Leave out the first snapshot itself and allocations with no Python frame.
    noise = (tracemalloc.__file__, "<unknown>")
    return [s for s in stats if s.traceback[0].filename not in noise]


# -- anatomy: what one idle flow and one baseline task are made of ------------


def _coroutine_chain(task: asyncio.Task[Any]) -> list[tuple[str, Any]]:
    chain: list[tuple[str, Any]] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        name = getattr(awaited, "__qualname__", type(awaited).__name__)
        chain.append((f"coroutine {name} (with its frame)", awaited))
        awaited = getattr(awaited, "cr_await", None)
        if awaited is not None and not asyncio.iscoroutine(awaited):
            chain.append((f"awaited {type(awaited).__name__}", awaited))
            break
    return chain


def _anatomy_rows(parts: list[tuple[str, Any]]) -> list[tuple[str, int]]:
    seen: set[int] = set()
    rows = []
    for label, obj in parts:
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        rows.append((label, sys.getsizeof(obj)))
    return rows


def print_anatomy(flow_id: str, event: asyncio.Event, task: asyncio.Task[Any]) -> None:
    """sys.getsizeof of the objects one idle flow and one baseline task hold."""
    runner: Any = supervisor.get(flow_id)
    flow_task = runner.task
    parts: list[tuple[str, Any]] = [
        ("FlowRunner (slots)", runner),
        ("asyncio.Task", flow_task),
        ("flow id str", runner.id),
        ("state dict", runner.state),
    ]
    parts += [(f"state value {k!r}", v) for k, v in runner.state.items() if type(v) is int]
    if runner.start_state is not runner.state:
        parts.append(("start_state dict (separate copy)", runner.start_state))
    parts += _coroutine_chain(flow_task)
    parts.append(("wake Future (runner._wake)", runner._wake))
    frame = None
    for _, obj in _coroutine_chain(flow_task):
        if getattr(obj, "cr_code", None) is not None and obj.cr_code.co_name == "run_body":
            frame = obj.cr_frame
    if frame is not None and "stack" in frame.f_locals:
        parts.append(("run_body stack list", frame.f_locals["stack"]))
    for callback in getattr(flow_task, "_callbacks", None) or ():
        fn = callback[0] if isinstance(callback, tuple) else callback
        parts.append((f"task done callback {getattr(fn, '__qualname__', fn)}", fn))
        for cell in getattr(fn, "__closure__", None) or ():
            parts.append(("  its closure cell", cell))
    flow_rows = _anatomy_rows(parts)
    registry_bytes = sys.getsizeof(supervisor._flows) / max(1, len(supervisor._flows))
    flow_rows.append(("supervisor._flows dict slot (amortised)", round(registry_bytes)))

    base_parts: list[tuple[str, Any]] = [
        ("asyncio.Task", task),
    ]
    base_parts += _coroutine_chain(task)
    base_parts += [
        ("asyncio.Event", event),
        ("Event._waiters deque", event._waiters),
        ("its Future", event._waiters[0] if event._waiters else None),
    ]
    base_rows = _anatomy_rows(base_parts)

    print("Anatomy of one idle flow (sys.getsizeof; shared objects not counted):")
    print(_common.table(["object", "bytes"], [*flow_rows, ("total", _sum(flow_rows))]))
    print()
    print("Anatomy of one baseline task:")
    print(_common.table(["object", "bytes"], [*base_rows, ("total", _sum(base_rows))]))
    print()


def _sum(rows: list[tuple[str, int]]) -> int:
    return sum(size for _, size in rows)


# -- report -------------------------------------------------------------------


def _print_sites(result: Pass) -> None:
    n = result.n
    rows = []
    for stat in result.stats:
        frame = stat.traceback[0]
        average = stat.size_diff / stat.count_diff if stat.count_diff else 0
        code = result.code.get((frame.filename, frame.lineno), "")[:58]
        where = f"{_short(frame.filename)}:{frame.lineno}"
        rows.append((where, stat.size_diff / n, stat.count_diff / n, round(average), code))
    print(f"tracemalloc: top 10 allocation sites of the flows' delta ({n:,} flows):")
    print(_common.table(["site", "bytes/flow", "blocks/flow", "bytes/block", "code"], rows))
    print()


def _print_tracebacks(result: Pass) -> None:
    n = result.n
    print(f"tracemalloc: top 5 allocation tracebacks of the flows' delta ({n:,} flows):")
    for stat in result.stats[:5]:
        print(f"  {stat.size_diff / n:,.0f} bytes/flow in {stat.count_diff / n:.2f} blocks/flow")
        for frame in list(stat.traceback)[-4:]:
            code = result.code.get((frame.filename, frame.lineno), "")
            print(f"    {_short(frame.filename)}:{frame.lineno}  {code[:70]}")
    print()


def _print_census(result: Pass) -> None:
    print(f"gc-tracked objects added by {result.n:,} flows, by type (sys.getsizeof):")
    print(_common.table(["type", "objects/flow", "bytes/flow"], result.census))
    print()


def _short(filename: str) -> str:
    for marker in ("/site-packages/", str(_common.REPO) + "/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _keep_sources() -> None:
    # Read the engine's source now, so the sites printed at the end show the
    # code that ran even if the files are edited meanwhile.
    for module in list(sys.modules.values()):
        filename = getattr(module, "__file__", None)
        if filename and filename.endswith(".py"):
            linecache.getlines(filename)


def main() -> int:
    _keep_sources()
    parser = _common.parser("Memory per idle flow, against bare asyncio tasks awaiting an Event.")
    parser.add_argument(
        "--flows", type=int, default=None, help="flows, and baseline tasks (default 100,000)"
    )
    args = parser.parse_args()
    n = args.flows or (2_000 if args.quick else 100_000)
    _common.banner(f"bench_memory: {n:,} idle flows vs {n:,} bare tasks awaiting an Event")

    rss = asyncio.run(_one_pass(n, "rss"))
    gc.collect()
    tracemalloc.start(1)
    traced = asyncio.run(_one_pass(n, "trace"))
    gc.collect()
    tracemalloc.start(12)  # deep tracebacks are slow to record: a smaller sample
    tracebacks = asyncio.run(_one_pass(min(n, 2_000), "tracebacks"))

    _print_census(rss)
    _print_sites(traced)
    _print_tracebacks(tracebacks)
    print(
        f"start: {rss.start_seconds:.2f} s for {n:,} astart calls; "
        f"stop: {rss.stop_seconds:.2f} s for {n:,} astop calls (tracemalloc off)"
    )
    print()

    per_flow = traced.flows / n
    per_task = traced.baseline / n
    passed = per_flow <= TARGET_BYTES
    rows = [
        (
            "tracemalloc",
            per_task,
            per_flow,
            per_flow / per_task,
            f"<= {TARGET_BYTES:,}",
            _common.verdict(passed),
        ),
        ("RSS delta", rss.baseline / n, rss.flows / n, rss.flows / rss.baseline, "(info)", ""),
    ]
    print(f"Memory per idle flow ({n:,} of each, same process):")
    headers = ["measure", "bytes/task (baseline)", "bytes/flow", "ratio", "target", "result"]
    print(_common.table(headers, rows))
    return _common.exit_status(passed, args.strict)


if __name__ == "__main__":
    sys.exit(main())
