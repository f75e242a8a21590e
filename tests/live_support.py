"""Live-server tests: a daphne child process that starts with a working asgiref.

``ChannelsLiveServerTestCase`` *forks* its daphne server from the test
process. Thread pools the parent already used are copied without their
threads, so in the child they take work and never run it. asgiref's
``SyncToAsync`` single-thread executor is one: it runs
``database_sync_to_async`` calls, such as ``AuthMiddlewareStack`` looking up
the session's user, and every WebSocket handshake of the live server hung
once an earlier test had used it. Importing this module gives every forked
child a fresh one (caravela_flow renews its own pools itself).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync
from channels.testing import ChannelsLiveServerTestCase


def _fresh_asgiref_executor() -> None:
    SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_asgiref_executor)


class LiveServerTestCase(ChannelsLiveServerTestCase):  # type: ignore[misc]
    """``ChannelsLiveServerTestCase`` whose server process has working thread pools."""

    serve_static = False
