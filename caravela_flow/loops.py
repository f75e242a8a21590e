"""Event loops that local-mode runners live on, and calls into them from any thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync

T = TypeVar("T")

_lock = threading.Lock()
_background: asyncio.AbstractEventLoop | None = None


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def server_loop() -> asyncio.AbstractEventLoop | None:
    """The ASGI server's loop when this thread runs sync code for it (a sync view)."""
    local = SyncToAsync.threadlocal
    if getattr(local, "main_event_loop_pid", None) != os.getpid():
        return None
    loop: asyncio.AbstractEventLoop | None = getattr(local, "main_event_loop", None)
    if loop is None or loop.is_closed() or not loop.is_running():
        return None
    return loop


def background_loop() -> asyncio.AbstractEventLoop:
    """A loop owned by caravela_flow, running in a daemon thread (made on first use)."""
    global _background
    with _lock:
        if _background is None or _background.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=serve, name="caravela-flow-loop", daemon=True).start()
            ready.wait()
            _background = loop
        return _background


def _after_fork_in_child() -> None:
    # The background loop's thread does not survive a fork: make a new one on demand.
    global _background, _lock
    _background = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def home_loop() -> asyncio.AbstractEventLoop:
    """Where a flow started from this thread should live."""
    return running_loop() or server_loop() or background_loop()


def _run_into(future: concurrent.futures.Future[Any], fn: Callable[..., Any], args: Any) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn(*args))
    except BaseException as exc:
        future.set_exception(exc)


def submit(
    loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any
) -> concurrent.futures.Future[T]:
    """Schedule ``fn(*args)`` on ``loop`` from another thread; raises if the loop is closed."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    loop.call_soon_threadsafe(_run_into, future, fn, args)
    return future


def call_on(loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any) -> T:
    """Run the sync ``fn(*args)`` on ``loop``'s thread and return its result (sync callers)."""
    if running_loop() is loop:
        return fn(*args)
    return submit(loop, fn, *args).result()


async def acall_on(loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any) -> T:
    """Run the sync ``fn(*args)`` on ``loop``'s thread and return its result (async callers)."""
    if running_loop() is loop:
        return fn(*args)
    return await asyncio.wrap_future(submit(loop, fn, *args))


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout: float) -> None:
    """Cancel ``tasks`` and wait up to ``timeout`` seconds for them to end.

    A task that survives its cancellation is cancelled again: on Python 3.11
    ``asyncio.wait_for`` can swallow a cancellation, and redis-py uses it to
    send commands when the connection has a ``socket_timeout``, so a channel
    layer ``receive`` may carry on after one ``cancel()``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = {task for task in tasks if not task.done()}
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.1, deadline - loop.time()))
