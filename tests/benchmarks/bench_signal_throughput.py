"""Local signal → ``flow.state`` throughput, against a bare asyncio.Queue ping-pong.

Every flow here has an ``asyncio.Queue`` as its ``notify`` sink, and the
default settings' InMemoryChannelLayer, so each message is also published to
the flow's group. Variants, each over ``--n`` signals after a warm-up:

- signal → flow.state: the flow waits in ``repeat(wait_until(...))`` for a
  condition the signals never meet. ``asignal(handle, {"n": i})``, await the
  resulting ``flow.state`` from the queue, then yield once to the loop so the
  runner re-checks its condition and the group publish goes out before the
  next signal (the baseline's ping-pong yields once per round trip too).
- echo: the flow answers every signal with a step of its own
  (``wait_until(n != seen)`` then ``set_state(seen = n)``); the caller awaits
  the answer. Two ``flow.state`` messages per round trip.
- pipelined: 1,000 signals, then await their 1,000 messages, then yield once.

Baselines: two tasks bouncing each value over two ``asyncio.Queue``s
(one ping, one pong per round trip), and the same pipelined in batches.

Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_signal_throughput.py [--n 50000] [--quick]
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import _common
from channels.layers import get_channel_layer

from caravela_flow import Flows, asignal, astart, astop, flow, repeat, set_state, wait_until
from caravela_flow.groups import flow_group
from caravela_flow.supervisor import supervisor

TARGET_RATIO = 0.5
BATCH = 1_000


class PingFlows(Flows):
    listen = flow(
        repeat(wait_until(lambda s: s["n"] < 0)),
        initial_state={"n": 0},
    )
    echo = flow(
        repeat(
            wait_until(lambda s: s["n"] != s["seen"]),
            set_state(lambda s: {**s, "seen": s["n"]}),
        ),
        initial_state={"n": 0, "seen": 0},
    )


class Stopwatch:
    """Wall-clock and process CPU seconds between ``start()`` and ``stop()``."""

    def start(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = _common.cpu_seconds()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, _common.cpu_seconds() - self.cpu


@dataclass
class Result:
    name: str
    round_trips: int
    messages: int
    seconds: float
    cpu: float

    @property
    def per_second(self) -> float:
        return self.round_trips / self.seconds

    @property
    def per_cpu_second(self) -> float:
        return self.round_trips / self.cpu if self.cpu > 0 else float("nan")

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds


# -- baselines ----------------------------------------------------------------


async def baseline_ping_pong(n: int) -> Result:
    pings: asyncio.Queue[int] = asyncio.Queue()
    pongs: asyncio.Queue[int] = asyncio.Queue()

    async def echo() -> None:
        while True:
            pongs.put_nowait(await pings.get())

    echoer = asyncio.get_running_loop().create_task(echo())
    watch = Stopwatch()
    watch.start()
    for i in range(n):
        pings.put_nowait(i)
        if await pongs.get() != i:
            raise AssertionError("out of order")
    seconds, cpu = watch.stop()
    echoer.cancel()
    return Result("baseline: Queue ping-pong", n, n, seconds, cpu)


async def baseline_pipelined(n: int) -> Result:
    pings: asyncio.Queue[int] = asyncio.Queue()
    pongs: asyncio.Queue[int] = asyncio.Queue()

    async def echo() -> None:
        while True:
            pongs.put_nowait(await pings.get())

    echoer = asyncio.get_running_loop().create_task(echo())
    watch = Stopwatch()
    watch.start()
    for start in range(0, n, BATCH):
        batch = range(start, min(start + BATCH, n))
        for i in batch:
            pings.put_nowait(i)
        for i in batch:
            if await pongs.get() != i:
                raise AssertionError("out of order")
    seconds, cpu = watch.stop()
    echoer.cancel()
    return Result(f"baseline: Queue pipelined x{BATCH:,}", n, n, seconds, cpu)


# -- flows --------------------------------------------------------------------


class Flock:
    """``count`` flows of one kind, each with its own notify queue."""

    def __init__(self, name: str, count: int, subscriber: bool) -> None:
        self.name = name
        self.count = count
        self.subscriber = subscriber
        self.handles: list[Any] = []
        self.queues: list[asyncio.Queue[dict[str, Any]]] = []
        self.readers: list[asyncio.Task[None]] = []
        self.received = 0

    async def __aenter__(self) -> Flock:
        for _ in range(self.count):
            queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            handle = await astart(PingFlows, self.name, notify=queue)
            self.handles.append(handle)
            self.queues.append(queue)
            if self.subscriber:
                await self._subscribe(handle.id)
        await asyncio.sleep(0)
        return self

    async def _subscribe(self, flow_id: str) -> None:
        # What a FlowConsumer does: a channel in the flow's group, read continuously.
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(flow_group(flow_id), channel)

        async def read() -> None:
            while True:
                await layer.receive(channel)
                self.received += 1

        self.readers.append(asyncio.get_running_loop().create_task(read()))

    async def __aexit__(self, *exc: object) -> None:
        for handle in self.handles:
            await astop(handle)
            supervisor.forget(handle.id)  # not retained into the next run
        for reader in self.readers:
            reader.cancel()


async def flows_signal_state(n: int, flows: int, subscriber: bool) -> Result:
    async with Flock("listen", flows, subscriber) as flock:
        handles, queues = flock.handles, flock.queues

        async def trip(i: int) -> None:
            k = i % flows
            await asignal(handles[k], {"n": i + 1})  # a change, so a message
            message = await queues[k].get()
            if message["state"]["n"] != i + 1:
                raise AssertionError(f"expected n={i + 1}, got {message}")
            await asyncio.sleep(0)

        seconds, cpu = await _timed(trip, n)
    return Result("flows: signal -> flow.state", n, n, seconds, cpu)


async def flows_echo(n: int, flows: int, subscriber: bool) -> Result:
    async with Flock("echo", flows, subscriber) as flock:
        handles, queues = flock.handles, flock.queues
        received = 0
        base = 0  # signals carry increasing values, so the flow always sees a change

        async def trip(i: int) -> None:
            nonlocal received
            k = i % flows
            value = base + i + 1
            await asignal(handles[k], {"n": value})
            while True:
                message = await queues[k].get()
                received += 1
                if message["state"]["seen"] == value:
                    return

        warm = min(1_000, n)
        await _run(trip, warm)
        base, received = warm + 1, 0
        seconds, cpu = await _timed(trip, n, warm_up=0)
    return Result("flows: echo (the flow answers)", n, received, seconds, cpu)


async def flows_pipelined(n: int, flows: int, subscriber: bool) -> Result:
    async with Flock("listen", flows, subscriber) as flock:
        handles, queues = flock.handles, flock.queues

        async def batch(start: int, stop: int) -> None:
            for i in range(start, stop):
                await asignal(handles[i % flows], {"n": i + 1})
            for i in range(start, stop):
                message = await queues[i % flows].get()
                if message["state"]["n"] != i + 1:
                    raise AssertionError(f"expected n={i + 1}, got {message}")
            await asyncio.sleep(0)

        await batch(0, min(BATCH, n))  # warm-up
        watch = Stopwatch()
        watch.start()
        for start in range(BATCH, BATCH + n, BATCH):
            await batch(start, min(start + BATCH, BATCH + n))
        seconds, cpu = watch.stop()
    return Result(f"flows: pipelined x{BATCH:,}", n, n, seconds, cpu)


async def _run(trip: Callable[[int], Awaitable[None]], count: int, offset: int = 0) -> None:
    for i in range(offset, offset + count):
        await trip(i)


async def _timed(
    trip: Callable[[int], Awaitable[None]], n: int, warm_up: int = 1_000
) -> tuple[float, float]:
    warm_up = min(warm_up, n)
    await _run(trip, warm_up)
    watch = Stopwatch()
    watch.start()
    await _run(trip, n, offset=warm_up)
    return watch.stop()


# -- report -------------------------------------------------------------------


async def _best(repeat: int, run: Callable[[], Awaitable[Result]]) -> Result:
    """The fastest of ``repeat`` runs: noise from other processes only slows a run down."""
    results = [await run() for _ in range(repeat)]
    return max(results, key=lambda r: r.per_second)


async def measure(args: Any) -> list[tuple[Result, Result | None]]:
    """Each run, with the baseline it is compared to (None for a baseline)."""
    n, flows, subscriber, repeat = args.n, args.flows, args.subscriber, args.repeat
    await baseline_ping_pong(min(n, 1_000))  # warm-up
    ping_pong = await _best(repeat, lambda: baseline_ping_pong(n))
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        signal_state = await flows_signal_state(n, flows, subscriber)
        profile.disable()
        _print_profile(profile)
    else:
        signal_state = await _best(repeat, lambda: flows_signal_state(n, flows, subscriber))
    echo = await _best(repeat, lambda: flows_echo(n, flows, subscriber))
    pipelined = await _best(repeat, lambda: baseline_pipelined(n))
    flows_piped = await _best(repeat, lambda: flows_pipelined(n, flows, subscriber))
    return [
        (ping_pong, None),
        (signal_state, ping_pong),
        (echo, ping_pong),
        (pipelined, None),
        (flows_piped, pipelined),
    ]


def _print_profile(profile: cProfile.Profile) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    print("cProfile of the signal -> flow.state run (top 25 by own time):")
    print(out.getvalue().split("\n", 4)[-1].rstrip())
    print()


def main() -> int:
    parser = _common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="round trips (default 50,000)")
    parser.add_argument("--flows", type=int, default=1, help="flows, signalled round-robin")
    parser.add_argument(
        "--subscriber",
        action="store_true",
        help="also read every flow's group from a channel, as a FlowConsumer would",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each variant; the fastest counts (3)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the headline run")
    args = parser.parse_args()
    args.n = args.n or (5_000 if args.quick else 50_000)
    _common.banner(
        f"bench_signal_throughput: {args.n:,} round trips (best of {args.repeat}), "
        f"{args.flows} flow(s), group subscriber: {'yes' if args.subscriber else 'no'}"
    )

    pairs = asyncio.run(measure(args))

    rows = []
    passed = True
    for result, baseline in pairs:
        rates = (result.per_second, result.messages_per_second, result.per_cpu_second)
        if baseline is None:
            rows.append((result.name, *rates, "", "", ""))
            continue
        ratio = result.per_second / baseline.per_second
        cpu_ratio = result.per_cpu_second / baseline.per_cpu_second
        ok = ratio >= TARGET_RATIO
        passed = passed and ok
        verdict = f"{_common.verdict(ok)} (>= {TARGET_RATIO:.0%})"
        rows.append((result.name, *rates, f"{ratio:.0%}", f"{cpu_ratio:.0%}", verdict))
    headers = ["run", "round trips/s", "messages/s", "per CPU-s", "ratio", "CPU ratio"]
    print(_common.table([*headers, "result"], rows))
    print()
    print(
        "A round trip is one signal in and its flow.state out (baseline: one ping in, one\n"
        "pong out); messages/s counts what the caller received from its queue (flow.state\n"
        "notifications; pongs for the baselines). ratio compares round trips/s (wall clock);\n"
        "CPU ratio compares round trips per CPU-second of this process, which other load on\n"
        "the machine disturbs less. The verdict uses the wall-clock ratio."
    )
    return _common.exit_status(passed, args.strict)


if __name__ == "__main__":
    sys.exit(main())
