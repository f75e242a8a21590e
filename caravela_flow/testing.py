"""Helpers for testing your own flows, with pytest or Django's ``TestCase``.

``FlowProbe`` records every message of a flow and waits for a state or the
flow's end; ``virtual_time`` runs an async test on a looptime event loop, so
``debounce(500)`` or ``wait(60_000)`` take no real time. Local mode only.
``FlowTestMixin`` (and the pytest fixture ``flows_stopped`` of
:mod:`caravela_flow.pytest_plugin`) stops the flows a test left running and
fails that test, naming them; it works in both modes.

::

    from caravela_flow import asignal
    from caravela_flow.testing import astart_probe, virtual_time

    class SyncTests(TestCase):
        @virtual_time
        async def test_debounces(self):
            probe = await astart_probe(BookSyncFlow, "sync_book", {"book_id": 1})
            await asignal(probe.handle, {"dirty": True})
            state = await probe.await_state({"dirty": False})
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .api import astart, get_state, start
from .definition import Flows
from .handle import FlowHandle
from .leaks import FlowGuard, leak_message
from .loops import running_loop
from .types import Message, State

if TYPE_CHECKING:
    from unittest import TestCase as _TestCase
else:
    _TestCase = object

P = ParamSpec("P")
R = TypeVar("R")

#: What ``await_state``/``wait_state`` accept: a predicate, or a dict the state must contain.
Match = Callable[[State], Any] | dict[str, Any]

FINAL_TYPES = frozenset({"flow.done", "flow.error", "flow.stopped"})


def _matcher(match: Match) -> Callable[[State], bool]:
    if isinstance(match, dict):
        expected = dict(match)
        return lambda state: all(k in state and state[k] == v for k, v in expected.items())
    if callable(match):
        return lambda state: bool(match(state))
    raise TypeError(f"expected a predicate or a dict, got {match!r:.80}")


class FlowProbe:
    """A ``notify`` sink that records a flow's messages and lets tests wait on them.

    Use it as ``start(..., notify=probe)``, or through :func:`start_probe`.
    Async waits use the loop's clock (virtual under looptime); sync waits use
    real time.
    """

    def __init__(self) -> None:
        #: Every message received, in order.
        self.messages: list[Message] = []
        self._handle: FlowHandle | None = None
        self._lock = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def __call__(self, message: Message) -> None:
        with self._lock:
            self.messages.append(message)
            self._lock.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            if loop is running_loop():
                _wake(future)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_wake, future)

    @property
    def handle(self) -> FlowHandle:
        """The probed flow's handle.

        Set by :func:`start_probe`/:func:`astart_probe`; after
        ``start(..., notify=probe)`` assign it yourself (``probe.handle = handle``).
        Reading it before then raises :class:`RuntimeError`.
        """
        if self._handle is None:
            raise RuntimeError(
                "this FlowProbe has no flow yet: start one with start_probe()/astart_probe(), "
                "or set probe.handle to the handle that start(..., notify=probe) returned"
            )
        return self._handle

    @handle.setter
    def handle(self, handle: FlowHandle) -> None:
        if not isinstance(handle, FlowHandle):
            raise TypeError(f"probe.handle must be a FlowHandle, got {handle!r:.80}")
        self._handle = handle

    @property
    def final(self) -> Message | None:
        """The flow's last message (``done``/``error``/``stopped``), if it has ended."""
        with self._lock:
            for message in reversed(self.messages):
                if message["type"] in FINAL_TYPES:
                    return message
        return None

    @property
    def states(self) -> list[State]:
        """The states that the messages carried, in order."""
        with self._lock:
            return [m["state"] for m in self.messages if "state" in m]

    def _scan(self, start: int, match: Callable[[State], bool]) -> tuple[State | None, int]:
        with self._lock:
            for message in self.messages[start:]:
                state = message.get("state")
                if state is not None and match(state):
                    return state, len(self.messages)
            return None, len(self.messages)

    def _first(self, match: Callable[[State], bool]) -> tuple[State | None, int]:
        with self._lock:
            seen = len(self.messages)
        if self._handle is not None:
            current = get_state(self._handle)
            if match(current):
                return current, seen
        found, _ = self._scan(seen, match)
        return found, seen

    async def await_state(self, match: Match, timeout: float = 5.0) -> State:
        """The first state (current or later) that matches; TimeoutError after ``timeout`` s."""
        test = _matcher(match)
        found, seen = self._first(test)
        async with asyncio.timeout(timeout):
            while found is None:
                await self._next_message(seen)
                found, seen = self._scan(seen, test)
        return found

    def wait_state(self, match: Match, timeout: float = 5.0) -> State:
        """Sync twin of :meth:`await_state` (for tests whose flows run on the background loop)."""
        test = _matcher(match)
        found, seen = self._first(test)
        deadline = time.monotonic() + timeout
        with self._lock:
            while found is None:
                # First the messages that came in before we took the lock.
                found, seen = self._scan(seen, test)
                if found is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no state matching {match!r} within {timeout:g} s")
                self._lock.wait(remaining)
        return found

    async def await_end(self, timeout: float = 5.0) -> Message:
        """The flow's final message; TimeoutError after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while True:
                with self._lock:
                    final, seen = self.final, len(self.messages)
                if final is not None:
                    return final
                await self._next_message(seen)

    def wait_end(self, timeout: float = 5.0) -> Message:
        """Sync twin of :meth:`await_end`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while (final := self.final) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the flow did not end within {timeout:g} s")
                self._lock.wait(remaining)
        return final

    async def _next_message(self, seen: int) -> None:
        """Return once there are more than ``seen`` messages.

        Checked under the lock, so a message that a flow on another thread
        delivers between the caller's look and this wait is not missed.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if len(self.messages) > seen:
                return
            self._waiters.append((loop, future))
        await future


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def start_probe(
    flows_class: type[Flows], name: str, initial_state: State | None = None
) -> FlowProbe:
    """``start`` a flow with a fresh :class:`FlowProbe` as its ``notify`` sink."""
    probe = FlowProbe()
    probe.handle = start(flows_class, name, initial_state, notify=probe)
    return probe


async def astart_probe(
    flows_class: type[Flows], name: str, initial_state: State | None = None
) -> FlowProbe:
    """``astart`` a flow with a fresh :class:`FlowProbe` as its ``notify`` sink."""
    probe = FlowProbe()
    probe.handle = await astart(flows_class, name, initial_state, notify=probe)
    return probe


def virtual_time(fn: Callable[P, Awaitable[R]]) -> Callable[P, R]:
    """Run an async test on a fresh looptime event loop: timers take no real time.

    Works on ``async def`` test methods of Django's ``TestCase`` and on plain
    pytest tests (with pytest-asyncio you may use ``@pytest.mark.looptime``
    instead). Flows started inside live on that loop and end with it.
    """
    import looptime

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        loop = looptime.new_event_loop(start=0)
        try:
            return loop.run_until_complete(fn(*args, **kwargs))
        finally:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    return wrapper


class FlowTestMixin(_TestCase):
    """A ``TestCase`` mixin: stops every flow a test started, and fails a test that left one.

    ``class SyncTests(FlowTestMixin, TestCase): ...``; a ``setUp`` of your own
    calls ``super().setUp()``. Flows already running when the test began are
    left alone.
    """

    def setUp(self) -> None:
        super().setUp()
        self.addCleanup(self._stop_leaked_flows, FlowGuard())

    def _stop_leaked_flows(self, guard: FlowGuard) -> None:
        leaked = guard.stop_leaked()
        if leaked:
            self.fail(leak_message(self.id(), leaked))
