"""A ``ChannelsLiveServerTestCase`` whose daphne child starts with fresh thread pools.

The live server is a *forked* child of the test process. Thread pools that
the parent already used are copied without their threads, so in the child
they accept work and never run it: asgiref's ``SyncToAsync`` single-thread
executor (behind ``database_sync_to_async``, e.g. ``AuthMiddlewareStack``
looking up the session's user) would hang every WebSocket handshake after an
earlier test made an ORM call from async code.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync
from channels.testing import ChannelsLiveServerTestCase
from daphne.testing import DaphneProcess


class FreshDaphneProcess(DaphneProcess):  # type: ignore[misc]
    """Daphne in a child process, with asgiref's executor replaced before serving."""

    def run(self) -> None:
        SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)
        super().run()


class LiveServerTestCase(ChannelsLiveServerTestCase):  # type: ignore[misc]
    """``ChannelsLiveServerTestCase`` that survives earlier async ORM use in the parent."""

    ProtocolServerProcess = FreshDaphneProcess
    serve_static = False
