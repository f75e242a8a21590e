"""Database connections around sync step functions (caravela_flow.calls).

As around a request: a connection that is broken or past ``CONN_MAX_AGE`` is
closed before and after each call; one that is fine is kept; and a thread
that has nothing open touches nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import TestCase

from caravela_flow.calls import close_old_connections


def in_a_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a fresh thread (with connections of its own); its result or its exception."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            for conn in connections.all(initialized_only=True):
                conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def opened() -> BaseDatabaseWrapper:
    conn = connections["default"]
    conn.ensure_connection()
    return conn


class CloseOldConnectionsTests(TestCase):
    databases = {"default"}

    def test_a_connection_past_its_max_age_is_closed(self) -> None:
        def check() -> bool:
            conn = opened()
            conn.close_at = time.monotonic() - 1
            close_old_connections()
            return conn.connection is None

        self.assertTrue(in_a_thread(check))

    def test_a_healthy_connection_within_its_max_age_is_kept(self) -> None:
        def check() -> bool:
            conn = opened()
            conn.close_at = time.monotonic() + 60
            close_old_connections()
            return conn.connection is not None

        self.assertTrue(in_a_thread(check))

    def test_a_connection_left_outside_autocommit_is_closed(self) -> None:
        def check() -> bool:
            conn = opened()
            conn.close_at = None
            conn.set_autocommit(False)
            close_old_connections()
            return conn.connection is None

        self.assertTrue(in_a_thread(check))

    def test_a_connection_that_saw_errors_is_checked_and_kept_when_usable(self) -> None:
        def check() -> tuple[bool, bool]:
            conn = opened()
            conn.close_at = None
            conn.errors_occurred = True
            close_old_connections()
            return conn.connection is not None, conn.errors_occurred

        self.assertEqual(in_a_thread(check), (True, False))

    def test_a_thread_that_never_used_the_database_opens_nothing(self) -> None:
        def check() -> list[Any]:
            close_old_connections()
            return [c for c in connections.all(initialized_only=True) if c.connection is not None]

        self.assertEqual(in_a_thread(check), [])

    def test_an_open_connection_is_checked_without_ensure_connection(self) -> None:
        # What pytest-django does outside django_db tests: ensure_connection() raises.
        def blocked(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("Database access not allowed")

        def check() -> bool:
            conn = opened()
            conn.close_at = time.monotonic() + 60
            with mock.patch.object(BaseDatabaseWrapper, "ensure_connection", blocked):
                close_old_connections()
            return conn.connection is not None

        self.assertTrue(in_a_thread(check))
