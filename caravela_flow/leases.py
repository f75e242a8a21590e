"""Worker mode: a host's leases — heartbeat, fencing, taking back, adopting.

:class:`Leases` belongs to one :class:`~caravela_flow.host.WorkerHost`.
Every ``LEASE_SECONDS / 3`` it renews the host's lease in the directory
(:mod:`caravela_flow.directory`), then adopts the flows of hosts whose
lease has expired. When its own lease was lost (the process was paused,
or Redis restarted empty) it first takes back every flow that is still its
own or nobody's, and silently stops the copies another worker adopted
meanwhile; until then the fence (:mod:`caravela_flow.fencing`) holds its
flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from . import fencing
from .addressing import resolve_flow, workers_group
from .conf import get_settings
from .directory import Adopted, Directory
from .errors import FlowError, FlowNotFound
from .state import check_state, wire_state
from .supervisor import supervisor

if TYPE_CHECKING:
    from .host import WorkerHost

logger = logging.getLogger("caravela_flow.worker")

LOST_REASON = "worker lost: the worker hosting this flow stopped answering"
#: Versions of an adopted flow continue from ``adoptions << VERSION_SHIFT``, so they
#: are newer than any message the lost worker sent.
VERSION_SHIFT = 32
#: Directory writes made at once when taking flows back.
BATCH = 100


class Leases:
    """Keeps a host's lease, and adopts the flows of lost hosts."""

    def __init__(self, host: WorkerHost, directory: Directory) -> None:
        self.host = host
        self.directory = directory
        self.lease = get_settings().LEASE_SECONDS
        self.fence = fencing.gate = fencing.Fence(self.lease)
        self._failing = False
        #: Whether a heartbeat ever succeeded (the first one finds no lease: that is normal).
        self._started = False
        self.adopted = 0

    async def keep(self) -> None:
        """Renew the lease forever (the host's task)."""
        while True:
            await self.beat()
            await asyncio.sleep(self.lease / 3)

    async def beat(self) -> None:
        """One heartbeat: renew, take back after a lapse, adopt orphans."""
        host = self.host
        assert host.channel is not None
        try:
            lapsed = self.fence.held()
            held, _ = await self.directory.heartbeat(host.id, host.channel, self.lease)
            if lapsed or not held:
                await self._take_back(lapsed, quiet=not self._started)
            self._started = True
            self.fence.renew()
            if self._failing:
                logger.warning("worker host: Redis answers again; lease renewed")
                self._failing = False
            await self._adopt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._failing:
                logger.warning("worker host: could not renew its lease: %s", exc)
                self._failing = True

    async def _take_back(self, lapsed: bool, quiet: bool = False) -> None:
        host = self.host
        specs = list(host.specs.items())
        (logger.debug if quiet and not specs else logger.warning)(
            "worker host: lease %s; taking back %d flows",
            "lapsed" if lapsed else "was gone (Redis restarted?)",
            len(specs),
        )
        lost = 0
        for start in range(0, len(specs), BATCH):
            chunk = specs[start : start + BATCH]
            kept = await asyncio.gather(
                *(self.directory.register(host.id, i, s, force=False) for i, s in chunk)
            )
            for (flow_id, _), ok in zip(chunk, kept, strict=True):
                if not ok:
                    lost += 1
                    host.drop_silently(flow_id)
        await host.layer.group_add(workers_group(), host.channel)
        if lost:
            logger.warning("worker host: %d flows were adopted elsewhere; stopped here", lost)

    async def _adopt(self) -> None:
        if not self.host.accepting:
            return
        for dead in await self.directory.dead_hosts(self.host.id):
            while self.host.accepting:
                taken = await self.directory.adopt(dead, self.host.id)
                if not taken:
                    break
                for adopted in taken:
                    self._take_over(adopted)

    def _take_over(self, adopted: Adopted) -> None:
        host, spec = self.host, adopted.spec
        try:
            definition = resolve_flow(spec.get("flow"))
            state = check_state(spec.get("state"), "start state")
        except FlowError as exc:
            logger.warning("worker host: cannot adopt flow %s: %s", adopted.flow_id, exc)
            host.spawn(self.directory.finish(host.id, adopted.flow_id, spec, 0))
            return
        runner = supervisor.launch(
            definition,
            state,
            spec.get("notify"),
            flow_id=adopted.flow_id,
            publish=host.publish,
        )
        runner.key = spec.get("key")
        runner.adoptions = adopted.adoptions
        runner.version = adopted.adoptions << VERSION_SHIFT
        host.specs[runner.id] = spec
        self.adopted += 1
        if definition.restart == "temporary":
            logger.warning("worker host: flow %s was lost with its worker (temporary)", runner.id)
            with contextlib.suppress(FlowNotFound):
                supervisor.stop(runner.id, LOST_REASON)
            return
        logger.info("adopted flow %s (%s)", runner.id, definition.key)
        runner.emit("state", state=wire_state(state))

    async def leave(self) -> None:
        """Give the lease up at a clean shutdown (its flows have ended)."""
        try:
            await self.directory.leave(self.host.id)
        except Exception as exc:
            logger.warning("worker host: could not give up its lease: %s", exc)

    def statistics(self) -> dict[str, Any]:
        return {"held": self.fence.held(), "adopted": self.adopted}
