"""Calling user functions: async ones on the loop, sync ones in caravela_flow's threads."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from .conf import get_settings

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    """The pool that runs sync step functions (``CARAVELA_FLOW["THREADS"]`` threads)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=get_settings().THREADS, thread_name_prefix="caravela-flow-work"
            )
        return _executor


def _after_fork_in_child() -> None:
    # A forked child has none of the parent's threads; the copied pool would
    # queue work forever (e.g. a live-test server forked from the test run).
    global _executor, _lock
    _executor = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def close_old_connections() -> None:
    """Django's ``close_old_connections()`` for the connections this thread has open.

    As around a request: a connection that is broken or past ``CONN_MAX_AGE``
    is closed. A thread that never used the database has nothing to check, and
    an open connection is checked without a round trip unless it saw errors,
    so a step function that does not use the database never touches it (under
    pytest-django, not even outside ``django_db`` tests).
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _close_if_unusable_or_obsolete(conn)


def _close_if_unusable_or_obsolete(conn: BaseDatabaseWrapper) -> None:
    # As BaseDatabaseWrapper.close_if_unusable_or_obsolete(), but reading the open
    # connection's autocommit flag directly: get_autocommit() goes through
    # ensure_connection(), which pytest-django blocks even on an open connection.
    conn.health_check_done = False  # type: ignore[attr-defined]
    if conn.autocommit != conn.settings_dict["AUTOCOMMIT"]:
        conn.close()
        return
    if conn.errors_occurred:
        if conn.is_usable():
            conn.errors_occurred = False
            conn.health_check_done = True  # type: ignore[attr-defined]
        else:
            conn.close()
            return
    if conn.close_at is not None and time.monotonic() >= conn.close_at:
        conn.close()


def _in_thread(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    close_old_connections()
    try:
        return fn(*args)
    finally:
        close_old_connections()


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` and return its (awaited) result.

    Coroutine functions run on the loop; other callables run in a worker thread
    so blocking I/O and the ORM are fine. An awaitable returned by a sync
    callable (``lambda: fetch(1)``) is awaited on the loop.
    """
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    ):
        result = await fn(*args)
    else:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        result = await loop.run_in_executor(executor(), context.run, _in_thread, fn, args)
    while inspect.isawaitable(result):
        result = await result
    return result


def exc_reason(exc: BaseException) -> str:
    """``"ExcType: message"`` (just ``"ExcType"`` when the message is empty)."""
    message = str(exc)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name
