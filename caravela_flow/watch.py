"""Worker mode: keeps a web process's open subscriptions true across faults.

One :class:`Watch` per event loop serving :class:`~caravela_flow.consumers.FlowConsumer`
instances. Every ``WATCH_SECONDS`` it reads the directory
(:mod:`caravela_flow.directory`) once for all of them:

- **Redis restarted** (the directory's epoch changed, or Redis failed to
  answer or looked empty since the last look): group memberships
  were lost with it, so each consumer joins its flow's group again and
  forwards the flow's snapshot if it is newer than what it sent.
- **A flow's worker is gone** and no survivor adopted it within
  ``LEASE_SECONDS`` + ``WATCH_SECONDS`` more: the consumer closes with 4500,
  so the client reconnects and asks again (adopted by then, or still
  unreachable): a socket never stays open and quiet on a dead flow.
- **A flow the directory no longer knows**: the consumer closes with 4404.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

from .conf import get_settings
from .directory import Directory

if TYPE_CHECKING:
    from .consumers import FlowConsumer

logger = logging.getLogger("caravela_flow")

#: Seconds between looks at the directory.
WATCH_SECONDS = 2.0
#: Subscriptions re-synchronised at once after a Redis restart.
RESYNC_CONCURRENCY = 50


class Watch:
    """The open subscriptions of one event loop, and the task that watches them."""

    def __init__(self, layer: Any) -> None:
        self.directory = Directory(layer)
        self.consumers: set[FlowConsumer] = set()
        self.epoch: float | None = None
        #: Set when Redis failed or looked empty: the next good look re-synchronises.
        self.suspect = False
        #: Flow id → when its owner was first seen without a lease.
        self.orphaned: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None
        self._failing = False

    def add(self, consumer: FlowConsumer) -> None:
        self.consumers.add(consumer)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, consumer: FlowConsumer) -> None:
        self.consumers.discard(consumer)

    async def _run(self) -> None:
        while self.consumers:
            try:
                await self.look()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Redis may be restarting: re-synchronise everyone once it answers.
                self.suspect = True
                if not self._failing:
                    logger.warning("subscriptions: cannot read the flow directory: %s", exc)
                    self._failing = True
            else:
                self._failing = False
            await asyncio.sleep(WATCH_SECONDS)

    async def look(self) -> None:
        """One look at the directory for every open subscription."""
        consumers = [c for c in self.consumers if c.flow_id is not None and not c.closing]
        epoch = await self.directory.epoch()
        if epoch is None:
            self.suspect = True
            return  # Redis restarted and no worker has registered yet: look again soon
        restarted = self.suspect or (self.epoch is not None and epoch != self.epoch)
        self.epoch, self.suspect = epoch, False
        if restarted:
            logger.warning("subscriptions: Redis restarted; rejoining %d flows", len(consumers))
            slots = asyncio.Semaphore(RESYNC_CONCURRENCY)

            async def resync(consumer: FlowConsumer) -> None:
                async with slots:
                    await consumer.resync()

            await asyncio.gather(*(resync(c) for c in consumers))
            return
        ids = [c.flow_id for c in consumers if c.flow_id is not None]
        routes = await self.directory.routes(ids)
        now = time.monotonic()
        lease = get_settings().LEASE_SECONDS
        patience = lease + WATCH_SECONDS
        # Just after a restart, hosts are still registering their flows again.
        settled = time.time() - epoch > 2 * lease + 1
        for consumer, route in zip(consumers, routes, strict=True):
            flow_id = consumer.flow_id
            assert flow_id is not None
            if route.owner is None:
                if settled:
                    await consumer.gone()
            elif route.channel is None:
                since = self.orphaned.setdefault(flow_id, now)
                if now - since >= patience:
                    self.orphaned.pop(flow_id, None)
                    await consumer.lost()
            else:
                self.orphaned.pop(flow_id, None)
        live = set(ids)
        for flow_id in [i for i in self.orphaned if i not in live]:
            del self.orphaned[flow_id]


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watch] = weakref.WeakKeyDictionary()


def watch(layer: Any) -> Watch:
    """The running loop's watch (made on first use)."""
    loop = asyncio.get_running_loop()
    found = _watches.get(loop)
    if found is None:
        found = _watches[loop] = Watch(layer)
    return found
