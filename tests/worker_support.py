"""Real parts for the worker-mode tests: a private redis-server and ``runworker`` processes.

- :class:`Process` runs a child whose output is copied, line by line, to a
  log file and watched, so a test waits for a log line (an event) instead
  of sleeping. Every child is stopped at the end, even when a test fails.
- :class:`RedisServer` is a throwaway ``redis-server`` on a free port.
- :class:`WorkerPool` starts ``manage.py runworker caravela-flows`` processes
  against that server under one Redis prefix, and waits until each says
  "worker host ready".
- :func:`worker_mode` switches this process to worker mode against them.
- :class:`Subscriber` is a channel of its own on the Redis layer: it joins
  flow groups and asks workers questions directly.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from channels.layers import channel_layers
from django.test import override_settings

from caravela_flow.loops import cancel_and_wait
from caravela_flow.remote import reset_client

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = shutil.which("redis-server")
WORKER_CHANNEL = "caravela-flows"
#: Seconds a child may take to start (Django setup on a loaded machine).
STARTUP_SECONDS = 30.0
#: Seconds a child may take to exit after SIGTERM before it is killed.
STOP_SECONDS = 15.0
READY = re.compile(r"worker host ready on (\S+)")

_children: set[Process] = set()


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unique_prefix(label: str) -> str:
    """A Redis key prefix no other test uses."""
    return f"cft-{re.sub(r'[^a-z0-9]+', '-', label.lower())[:40]}-{uuid.uuid4().hex[:8]}"


class ChildFailed(AssertionError):
    """A child process did not do what a test waited for; carries the end of its log."""


class Process:
    """A child process whose output goes to a log file and can be waited on line by line."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        _children.add(self)
        self._reader = threading.Thread(target=self._read, name=f"log {name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("w") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        with self._changed:
            return "".join(self.lines[-lines:])

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float, start: int = 0) -> re.Match:
        """The first line (from index ``start``) matching ``pattern``, waiting for it to appear."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    found = regex.search(line)
                    if found:
                        return found
                seen = max(seen, len(self.lines))
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    why = "exited" if self._eof else f"printed nothing like it in {timeout:g} s"
                    raise ChildFailed(
                        f"{self.name} {why} while waiting for {regex.pattern!r}; "
                        f"log {self.log}:\n{''.join(self.lines[-40:])}"
                    )
                self._changed.wait(left)

    async def await_line(
        self, pattern: str | re.Pattern[str], timeout: float, start: int = 0
    ) -> re.Match:
        """:meth:`wait_for` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, pattern, timeout, start)

    def count(self, pattern: str | re.Pattern[str]) -> int:
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.lines if regex.search(line))

    def matches(self, pattern: str | re.Pattern[str]) -> list[re.Match]:
        regex = re.compile(pattern)
        with self._changed:
            return [m for m in map(regex.search, self.lines) if m]

    def send_signal(self, signum: int) -> None:
        if self.running():
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, and wait for it."""
        if self.running():
            self.proc.kill()
        self.proc.wait()
        self._close()

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._close()
        return code

    def stop(self, timeout: float = STOP_SECONDS) -> int:
        """SIGTERM; SIGKILL if it has not exited after ``timeout`` seconds. Returns its code."""
        self.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def _close(self) -> None:
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        _children.discard(self)


def live_children() -> list[Process]:
    """Children still running, except redis-server (for failure reports)."""
    return [c for c in list(_children) if c.running() and c.name != "redis-server"]


@atexit.register
def _kill_leftovers() -> None:
    # A fixture's teardown normally stops its children; this covers an aborted run.
    for child in list(_children):
        with contextlib.suppress(Exception):
            child.kill()


class RedisServer:
    """A private ``redis-server`` (no persistence) on a free port of 127.0.0.1."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        assert REDIS_SERVER is not None
        for _ in range(5):
            self.port = port or free_port()
            args = [REDIS_SERVER, "--port", str(self.port), "--save", "", "--appendonly", "no"]
            args += ["--bind", "127.0.0.1", "--dir", str(log_dir)]
            self.process = Process(
                "redis-server", args, dict(os.environ), log_dir / f"redis-{self.port}.log"
            )
            try:
                self.process.wait_for("Ready to accept connections", STARTUP_SECONDS)
                return
            except ChildFailed:
                self.process.kill()  # most likely the port was taken meanwhile: try another
        raise ChildFailed(f"redis-server did not start; log:\n{self.process.tail()}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.stop()


def worker_env(redis_url: str, prefix: str) -> dict[str, str]:
    """The environment of a ``runworker`` (or daphne) child in worker mode."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        REDIS_URL=redis_url,
        CARAVELA_FLOW_MODE="worker",
        CARAVELA_FLOW_REDIS_PREFIX=prefix,
        PYTHONUNBUFFERED="1",
    )
    return env


class Worker(Process):
    """One ``manage.py runworker caravela-flows`` process."""

    #: The worker host's own channel (from its "ready" line): send it requests directly.
    channel: str = ""

    def wait_ready(self, timeout: float = STARTUP_SECONDS) -> None:
        self.channel = self.wait_for(READY, timeout).group(1)

    def started_ids(self) -> list[str]:
        """Ids of the flows this worker logged as started."""
        return [m.group(1) for m in self.matches(r"started flow ([0-9a-f]{32})")]


class WorkerPool:
    """``runworker`` processes sharing one Redis prefix; stopped (SIGTERM, then kill) on close."""

    def __init__(self, redis_url: str, prefix: str, log_dir: Path) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.log_dir = log_dir
        self.workers: list[Worker] = []

    def spawn(self, count: int = 1, **extra_env: str) -> list[Worker]:
        """Start ``count`` workers (with ``extra_env``) and wait until each is ready."""
        args = [sys.executable, str(ROOT / "manage.py"), "runworker", WORKER_CHANNEL]
        env = {**worker_env(self.redis_url, self.prefix), **extra_env}
        new = []
        for _ in range(count):
            number = len(self.workers) + 1
            log = self.log_dir / f"{self.prefix}-worker{number}.log"
            worker = Worker(f"worker {number}", args, env, log)
            self.workers.append(worker)
            new.append(worker)
        for worker in new:
            worker.wait_ready()
        return new

    def close(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.stop()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def layer_config(redis_url: str, prefix: str) -> dict[str, Any]:
    """``CHANNEL_LAYERS`` for the private Redis under ``prefix``."""
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # Above the 5 s BZPOPMIN wait, so idle receivers do not time out.
                "hosts": [{"address": redis_url, "socket_timeout": 15}],
                "prefix": prefix,
            },
        }
    }


@contextlib.contextmanager
def worker_mode(redis_url: str, prefix: str, **conf: Any) -> Iterator[None]:
    """Run this process's caravela_flow calls in worker mode against ``redis_url``/``prefix``."""
    settings = {"MODE": "worker", "START_TIMEOUT": 10, "REQUEST_TIMEOUT": 10, **conf}
    reset_client()
    with override_settings(CARAVELA_FLOW=settings, CHANNEL_LAYERS=layer_config(redis_url, prefix)):
        try:
            yield
        finally:
            reset_client()


class Subscriber:
    """A channel on the Redis layer that receives in a background task.

    Use it to listen to flow groups as a consumer would, and to ask a worker
    host questions directly on its channel. Make it inside :func:`worker_mode`.
    """

    def __init__(self) -> None:
        self.layer: Any = channel_layers.make_backend("default")
        self.channel = ""
        self.messages: list[dict[str, Any]] = []
        self.groups: set[str] = set()
        self._changed = asyncio.Condition()
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        self.channel = await self.layer.new_channel()
        self.resume()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pause()
        for group in self.groups:
            await self.layer.group_discard(group, self.channel)
        await self.layer.close_pools()

    async def pause(self) -> None:
        """Stop reading: messages pile up in Redis, and beyond its capacity are dropped."""
        if self._pump is not None:
            await cancel_and_wait([self._pump], 10)
            self._pump = None

    def resume(self) -> None:
        """Read again."""
        if self._pump is None:
            self._pump = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            async with self._changed:
                self.messages.append(message)
                self._changed.notify_all()

    async def join(self, group: str) -> None:
        await self.layer.group_add(group, self.channel)
        self.groups.add(group)

    async def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """The first message received (ever) for which ``match`` holds, waiting for it."""
        seen = 0

        def found() -> dict[str, Any] | None:
            nonlocal seen
            for message in self.messages[seen:]:
                if match(message):
                    return message
            seen = len(self.messages)
            return None

        async with asyncio.timeout(timeout), self._changed:
            while (message := found()) is None:
                await self._changed.wait()
            return message

    async def ask(self, channel: str, message: dict[str, Any], timeout: float = 20.0) -> Any:
        """Send ``message`` (with a fresh ``request`` id and our ``reply``) and await the answer."""
        request = uuid.uuid4().hex
        await self.layer.send(channel, {**message, "request": request, "reply": self.channel})
        return await self.wait_for(lambda m: m.get("request") == request, timeout)

    async def hosted(self, worker: Worker) -> list[dict[str, Any]]:
        """The flows one worker hosts (``caravela.list`` sent to that worker alone)."""
        reply = await self.ask(worker.channel, {"type": "caravela.list"})
        flows: list[dict[str, Any]] = reply["flows"]
        return flows


async def bounded(calls: list[Callable[[], Any]], limit: int) -> list[Any]:
    """Await ``call()`` for each of ``calls`` with at most ``limit`` in flight; results in order."""
    slots = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Any]) -> Any:
        async with slots:
            return await call()

    return await asyncio.gather(*(one(call) for call in calls))


async def flows_on(victim: Worker, survivor: Worker, wanted: int) -> tuple[list[str], str]:
    """Start flows until ``victim`` hosts ``wanted``; → (those ids, one id on ``survivor``)."""
    from caravela_flow import astart
    from tests.flowapp.flows import WorkerFlows

    on_victim: set[str] = set()
    async with Subscriber() as subscriber:
        for _ in range(10):
            await bounded([lambda: astart(WorkerFlows, "hold")] * wanted, 20)
            on_victim = {f["id"] for f in await subscriber.hosted(victim)}
            on_survivor = {f["id"] for f in await subscriber.hosted(survivor)}
            if len(on_victim) >= wanted and on_survivor:
                return sorted(on_victim)[:wanted], sorted(on_survivor)[0]
    raise AssertionError(f"{len(on_victim)} flows on the victim after many starts")


async def queued(redis_url: str, prefix: str, worker: Worker, count: int) -> None:
    """Wait until ``count`` messages wait, unread, for (a dead) ``worker`` in Redis."""
    import redis.asyncio

    # channels-redis keeps all of a process's specific channels in one sorted set.
    key = prefix + worker.channel[: worker.channel.index("!") + 1]
    connection = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(20):
            while await connection.zcard(key) < count:
                await asyncio.sleep(0.02)
    finally:
        await connection.aclose()


class Daphne(Process):
    """``daphne demo_site.asgi:application`` on a free port of 127.0.0.1."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        log_dir: Path,
        *,
        daphne_args: tuple[str, ...] = (),
        **extra_env: str,
    ) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
        args.extend(daphne_args)
        args.append("demo_site.asgi:application")
        log = log_dir / f"{prefix}-daphne.log"
        env = {**worker_env(redis_url, prefix), **extra_env}
        super().__init__("daphne", args, env, log)
        try:
            self.wait_for(r"Listening on TCP address", STARTUP_SECONDS)
        except BaseException:
            self.kill()
            raise

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"
