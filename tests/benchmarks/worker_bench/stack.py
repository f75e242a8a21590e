"""The benchmark's processes: redis-server, runworkers, daphne and the two clients.

Every child is started by :class:`Stack` and stopped when it closes (SIGTERM,
then SIGKILL), also on an error or Ctrl-C. Readiness is waited for by log line:
``Ready to accept connections`` (Redis), ``worker host ready on`` (each
worker), ``Listening on TCP address`` (daphne), ``@@ ready`` (clients).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
BENCH_DIR = REPO / "tests" / "benchmarks"
#: Seconds a child may take to start (Django setup on a loaded machine).
STARTUP_SECONDS = 60.0
#: Seconds a child may take to exit after SIGTERM before it is killed.
STOP_SECONDS = 15.0
WORKER_CHANNELS = ("caravela-flows", "bench-raw")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ANSWER = re.compile(r"^@@ (\S+) (.*)$")


class ChildFailed(RuntimeError):
    """A child did not do what the benchmark waited for; carries the end of its log."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After "pid (comm)": state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (all cores), from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


class Child:
    """A child process whose output goes to a log file and is watched line by line."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log: Path, commands: bool = False
    ) -> None:
        self.name = name
        self.log = log
        self.lines: list[str] = []
        self.cursor = 0
        self._eof = False
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE if commands else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name=f"log {name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("w") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def tail(self, count: int = 30) -> str:
        with self._changed:
            return "\n".join(self.lines[-count:])

    def wait_for(
        self, pattern: str | re.Pattern[str], timeout: float, start: int = 0
    ) -> tuple[re.Match[str], int]:
        """The first line from index ``start`` matching ``pattern``, and its index."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self._changed:
            while True:
                for index in range(seen, len(self.lines)):
                    found = regex.search(self.lines[index])
                    if found:
                        return found, index
                seen = max(seen, len(self.lines))
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    why = "exited" if self._eof else f"printed nothing like it in {timeout:g} s"
                    raise ChildFailed(
                        f"{self.name} {why} while waiting for {regex.pattern!r}; "
                        f"log {self.log}:\n{self.tail()}"
                    )
                self._changed.wait(left)

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.lines if regex.search(line))

    def command(self, line: str, tag: str, timeout: float) -> Any:
        """Send a command line; return the JSON of its ``@@ <tag>`` answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        while True:
            found, index = self.wait_for(ANSWER, timeout, self.cursor)
            self.cursor = index + 1
            if found.group(1) == tag:
                return json.loads(found.group(2))
            if found.group(1) == "error":
                raise ChildFailed(f"{self.name}: {line!r} failed: {json.loads(found.group(2))}")

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Close stdin, SIGTERM, and SIGKILL if it has not exited after ``timeout`` seconds."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)


class Stack:
    """redis-server, ``workers`` runworkers, daphne, the driver and the WebSocket client."""

    def __init__(self, workers: int, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.worker_count = workers
        self.prefix = f"cfbench-{uuid.uuid4().hex[:8]}"
        self.children: list[Child] = []
        self.redis_port = 0
        self.web_port = 0
        self.workers: list[Child] = []

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def web_base(self) -> str:
        return f"ws://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(REPO), str(BENCH_DIR), env.get("PYTHONPATH", "")]
        env.update(
            DJANGO_SETTINGS_MODULE="worker_bench.settings",
            REDIS_URL=self.redis_url,
            CARAVELA_FLOW_MODE="worker",
            CARAVELA_FLOW_REDIS_PREFIX=self.prefix,
            PYTHONPATH=os.pathsep.join(p for p in paths if p),
            PYTHONUNBUFFERED="1",
            DJANGO_DEBUG="false",
        )
        return env

    def _spawn(self, name: str, args: list[str], commands: bool = False) -> Child:
        log = self.log_dir / f"{self.prefix}-{name.replace(' ', '')}.log"
        child = Child(name, args, self.env(), log, commands)
        self.children.append(child)
        return child

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise ChildFailed("redis-server is not installed (apt-get install redis-server)")
        for attempt in range(5):
            self.redis_port = free_port()
            args = [redis_server, "--port", str(self.redis_port), "--bind", "127.0.0.1"]
            args += ["--save", "", "--appendonly", "no", "--dir", str(self.log_dir)]
            self.redis = self._spawn("redis", args)
            try:
                self.redis.wait_for("Ready to accept connections", STARTUP_SECONDS)
                break
            except ChildFailed:
                self.redis.stop()  # most likely the port was taken meanwhile
                self.children.remove(self.redis)
                if attempt == 4:
                    raise
        python = sys.executable
        manage = [python, str(REPO / "manage.py"), "runworker", *WORKER_CHANNELS]
        self.workers = [self._spawn(f"worker {n + 1}", manage) for n in range(self.worker_count)]
        self.web_port = free_port()
        daphne = [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.web_port)]
        self.daphne = self._spawn("daphne", [*daphne, "worker_bench.asgi:application"])
        self.driver = self._spawn("driver", [python, "-m", "worker_bench.driver"], True)
        self.wsclient = self._spawn("wsclient", [python, "-m", "worker_bench.wsclient"], True)
        for worker in self.workers:
            worker.wait_for(r"worker host ready on", STARTUP_SECONDS)
        self.daphne.wait_for(r"Listening on TCP address", STARTUP_SECONDS)
        for client in (self.driver, self.wsclient):
            client.cursor = client.wait_for(ANSWER, STARTUP_SECONDS)[1] + 1

    def close(self) -> None:
        """Stop every child: clients first, then daphne and workers (SIGTERM), Redis last."""
        for child in reversed(self.children):
            if child.proc.poll() is None and child.name != "redis":
                child.proc.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.stop()
            except Exception as exc:
                print(f"   could not stop {child.name}: {exc}", file=sys.stderr)
        self.children.clear()

    def processes(self) -> dict[str, int]:
        """Name → pid of every child still running."""
        return {c.name: c.pid for c in self.children if c.proc.poll() is None}

    def redis_calls(self) -> dict[str, int]:
        """Commands Redis has run so far, by command name."""
        import redis

        client = redis.Redis(port=self.redis_port)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


class CpuMeter:
    """CPU seconds of each process of a :class:`Stack` (and of the machine) over a phase."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.pids = {**stack.processes(), "bench (this)": os.getpid()}
        self.began = time.monotonic()
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.machine_before = machine_busy_seconds()
        self.load_before = os.getloadavg()[0]

    def stop(self) -> CpuReport:
        wall = time.monotonic() - self.began
        used = {name: cpu_seconds(pid) - self.before[name] for name, pid in self.pids.items()}
        machine = machine_busy_seconds() - self.machine_before
        return CpuReport(wall, used, machine, self.load_before, os.getloadavg()[0])


class CpuReport:
    """What :meth:`CpuMeter.stop` measured."""

    def __init__(
        self, wall: float, used: dict[str, float], machine: float, load0: float, load1: float
    ) -> None:
        self.wall = wall
        self.used = used
        self.machine = machine
        self.load = (load0, load1)

    @property
    def ours(self) -> float:
        return sum(self.used.values())

    def rows(self, per: int = 0) -> list[list[Any]]:
        """[process, CPU s, % of one core(, CPU ms per item)] for each process, then totals.

        ``per``: how many items (signals, flows) the phase handled, for the last column.
        """

        def row(name: str, seconds: float) -> list[Any]:
            cells: list[Any] = [name, seconds, 100 * seconds / self.wall]
            if per:
                cells.append(1000 * seconds / per)
            return cells

        rows = [row(name, seconds) for name, seconds in self.used.items()]
        rows.append(row("all of the above", self.ours))
        rows.append(row("other processes", max(self.machine - self.ours, 0.0)))
        rows.append(row("machine (2 cores = 200 %)", self.machine))
        return rows

    def busiest(self) -> tuple[str, float]:
        """The process of the stack that used the most CPU, and its % of one core."""
        name = max(self.used, key=lambda n: self.used[n])
        return name, 100 * self.used[name] / self.wall
