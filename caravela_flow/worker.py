"""Worker mode: what ``manage.py runworker caravela-flows`` runs.

- :class:`FlowWorkerConsumer` is the ASGI app for the ``caravela-flows``
  channel (route it with ``ChannelNameRouter``); it hands start requests to
  the process's :class:`~caravela_flow.host.WorkerHost`. Runners belong to
  the host, not to a consumer instance, so they outlive any instance.
- :class:`FlowWorker` is the ``runworker`` server class: a malformed message
  or a failing receive is logged and survived, and SIGTERM/SIGINT stop the
  worker gracefully (no new flows; hosted flows end with ``flow.error``
  "worker shutting down"; pending messages are flushed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from channels.consumer import AsyncConsumer
from channels.worker import Worker

from .conf import get_settings
from .host import get_host
from .loops import cancel_and_wait
from .receiving import messages

logger = logging.getLogger("caravela_flow.worker")


class FlowWorkerConsumer(AsyncConsumer):  # type: ignore[misc]
    """Receives ``caravela.start`` requests on the ``caravela-flows`` channel."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        try:
            host = await get_host(self.channel_layer)
            host.handle(message)
        except Exception:
            logger.exception("caravela_flow worker: dropped message %r", message)


class FlowWorker(Worker):  # type: ignore[misc]
    """A ``runworker`` server that survives bad messages and shuts down gracefully."""

    async def handle(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()

        def on_signal(signum: int) -> None:
            if stopping.is_set():
                logger.warning("second %s: exiting at once", signal.Signals(signum).name)
                os._exit(128 + signum)
            logger.info("%s: shutting down", signal.Signals(signum).name)
            stopping.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        host = None
        if get_settings().WORKER_CHANNEL in self.channels:
            host = await get_host(self.channel_layer)
        listeners = [loop.create_task(self.listener(channel)) for channel in self.channels]
        waiter = loop.create_task(stopping.wait())
        await asyncio.wait([*listeners, waiter], return_when=asyncio.FIRST_COMPLETED)
        # Stop reading first, so that start requests sent meanwhile are left to the
        # other workers instead of being dropped by a host that no longer takes flows.
        await cancel_and_wait([*listeners, waiter], get_settings().SHUTDOWN_TIMEOUT)
        if host is not None:
            await host.shutdown()
        logger.info("worker stopped")

    async def listener(self, channel: str) -> None:
        async for message in messages(self.channel_layer, channel, "worker"):
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                logger.warning("dropped a message with no type on %s: %.200r", channel, message)
                continue
            scope = {"type": "channel", "channel": channel}
            queue = self.get_or_create_application_instance(channel, scope)
            await queue.put(message)
