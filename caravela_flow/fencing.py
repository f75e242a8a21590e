"""Worker mode: the fence that holds a host's flows while its lease may have lapsed.

A host renews its lease in Redis every ``LEASE_SECONDS / 3``. Once
``LEASE_SECONDS`` pass without a renewal (the process was paused, or Redis
was out of reach) another worker may adopt its flows, so the host holds
them: no step starts and nothing is published until the host has reached
Redis again and taken back what is still its own. The check is by the
clock, not by a flag the heartbeat sets, so a host resumed after a pause is
held before its heartbeat task has even run.
"""

from __future__ import annotations

import asyncio
import time


class Fence:
    """Open while the lease is fresh; held once it is older than ``lease`` seconds."""

    def __init__(self, lease: float) -> None:
        self.lease = lease
        self.renewed = time.monotonic()
        self._open: asyncio.Event | None = None

    def held(self) -> bool:
        return time.monotonic() - self.renewed > self.lease

    def renew(self) -> None:
        """The lease is fresh again: release everything held."""
        self.renewed = time.monotonic()
        if self._open is not None:
            self._open.set()

    async def wait(self) -> None:
        """Return once the fence is open."""
        while self.held():
            if self._open is None or self._open.is_set():
                self._open = asyncio.Event()
            await self._open.wait()


#: The fence of this process's worker host (None outside a worker: nothing is held).
gate: Fence | None = None
