"""Seeing when a WebSocket's outgoing buffer is backed up, so its consumer can hold frames back.

ASGI has no back-pressure for ``websocket.send``: daphne writes each frame
into the connection's Twisted transport at once, and the transport buffers
without limit for a peer that does not read. :func:`watch_writes` finds the
connection behind the ``send`` callable an ASGI application gets (through
Channels' session wrapper, to daphne's ``partial(Server.handle_reply,
protocol)``) and reads Twisted's own flow-control flag on its transport,
``producerPaused``: set once more than the transport's ``bufferSize``
(64 KiB) waits to be written, cleared once all of it is written out. Twisted
keeps that flag for the transport's streaming producer, which under daphne
is already the ``HTTPChannel`` the socket was upgraded from; where there is
none, a producer that does nothing is registered so the flag is kept. On a
server where no such connection is found (one whose ``send`` itself waits
for the peer), nothing is watched.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

logger = logging.getLogger("caravela_flow")

#: How many wrappers around ``send`` are looked through, at most.
_DEPTH = 8
#: Seconds between looks at a backed-up transport.
POLL_SECONDS = 0.02


class WriteWatch:
    """Whether one connection's transport holds more than its buffer size."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._registered = False

    def attach(self) -> None:
        if getattr(self._transport, "producer", None) is None:
            self._transport.registerProducer(self, True)
            self._registered = True

    @property
    def paused(self) -> bool:
        """True while more than the transport's buffer size waits to be written."""
        return bool(getattr(self._transport, "producerPaused", False)) and not self.stopped

    @property
    def stopped(self) -> bool:
        """True once the connection is lost or closing (nothing more will be written)."""
        transport = self._transport
        return bool(getattr(transport, "disconnected", False)) or not getattr(
            transport, "connected", True
        )

    async def drained(self, seconds: float) -> bool:
        """Wait until the buffer is below its size again; False if still full after ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.paused:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True

    def detach(self) -> None:
        """Unregister the producer this watch registered, if it did."""
        if self._registered and getattr(self._transport, "producer", None) is self:
            try:
                self._transport.unregisterProducer()
            except Exception:
                logger.debug("could not unregister a write watch", exc_info=True)
        self._registered = False

    # Twisted's IPushProducer, for a transport with no producer of its own: the
    # transport's flag is what is read, so these do nothing.

    def pauseProducing(self) -> None:
        """Twisted: the buffer is full."""

    def resumeProducing(self) -> None:
        """Twisted: the buffer is written out."""

    def stopProducing(self) -> None:
        """Twisted: the connection is gone."""


def find_transport(send: Any) -> Any | None:
    """The Twisted transport behind an ASGI ``send`` (daphne's), or None."""
    candidate = send
    for _ in range(_DEPTH):
        if isinstance(candidate, functools.partial):
            for arg in candidate.args:
                transport = getattr(arg, "transport", None)
                if hasattr(transport, "producerPaused") and hasattr(transport, "registerProducer"):
                    return transport
            candidate = candidate.func
            continue
        owner = getattr(candidate, "__self__", None)
        inner = getattr(owner, "real_send", None)  # channels.sessions.InstanceSessionWrapper
        if inner is None:
            return None
        candidate = inner
    return None


def watch_writes(send: Any) -> WriteWatch | None:
    """A :class:`WriteWatch` on the connection behind ``send``; None if none is found."""
    transport = find_transport(send)
    if transport is None:
        return None
    watch = WriteWatch(transport)
    try:
        watch.attach()
    except Exception as exc:
        logger.debug("cannot watch a WebSocket's writes: %s", exc)
        return None
    return watch
