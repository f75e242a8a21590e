"""Delivery of a flow's messages: its own group, plus the optional ``notify`` sink.

Group sends go through one :class:`Publisher` per event loop, which keeps
each flow's messages in order and, when a backlog builds up, skips a
``flow.state`` that a newer message of the same flow already supersedes.
Final messages (``done``/``error``/``stopped``) are never skipped and are
retried if the layer fails.

Channel layers drop silently: a full group member is skipped by
``group_send``, and nothing tells the sender. So the flow's own group gets
*echoes*: a final message, and a state sent during a burst (a backlog, or
coalesced states), is sent again ``ECHO_AFTER`` seconds after it was first
sent (0.25, 1, 3 and 8 s), unless a newer message came. One echo at a fixed
moment is not enough: a subscriber still draining the burst's backlog then
is still full and misses it, so the latest state would wait for the next
change. Spread echoes reach a subscriber that falls up to 8 s behind.
Subscribers drop versions they already have (``FlowConsumer`` does), so the
latest state and the final message get through even when a burst overflowed
a subscriber. User ``notify`` groups get each message once. Callables and
``asyncio.Queue`` sinks (local mode) get every message at once, on the
runner's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer

from . import fencing
from .conf import get_settings
from .groups import flow_group

if TYPE_CHECKING:
    from .runner import FlowRunner
    from .types import Message

logger = logging.getLogger("caravela_flow")

SHARDS = 4
FINAL_ATTEMPTS = 8
#: Seconds from a message being sent to each of its echoes.
ECHO_AFTER = (0.25, 1.0, 3.0, 8.0)
#: Seconds within which a message follows the previous one as part of a burst.
BURST_SECONDS = ECHO_AFTER[0]
#: Seconds an echo waits when a newer message of its flow is still queued.
ECHO_POSTPONE = 0.05


@dataclass
class _Echo:
    group: str
    message: Message
    #: Loop time the message was first sent, and the index of its next echo.
    sent_at: float
    step: int = 0

    @property
    def due(self) -> float:
        return self.sent_at + ECHO_AFTER[self.step]


_publishers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Publisher] = (
    weakref.WeakKeyDictionary()
)


def channel_layer() -> BaseChannelLayer | None:
    """The configured channel layer, or None when ``CHANNEL_LAYERS`` has none."""
    layer: BaseChannelLayer | None = get_channel_layer(get_settings().CHANNEL_LAYER)
    return layer


class Publisher:
    """Sends group messages for the flows of one loop, in order per flow."""

    def __init__(self, loop: asyncio.AbstractEventLoop, layer: BaseChannelLayer) -> None:
        self.loop = loop
        self.layer = layer
        self._in_memory = isinstance(layer, InMemoryChannelLayer)
        self._queues: list[deque[tuple[tuple[str, ...], Message, bool]]] = [
            deque() for _ in range(SHARDS)
        ]
        self._drainers: list[asyncio.Task[None] | None] = [None] * SHARDS
        self._latest: dict[str, int] = {}
        self._echoes: dict[str, _Echo] = {}
        #: Set when an echo is added, so the echoer wakes for it.
        self._echo_added = asyncio.Event()
        self._bursty: set[str] = set()
        #: Loop time of each running flow's last message sent.
        self._last_sent: dict[str, float] = {}
        self._echoer: asyncio.Task[None] | None = None
        self.sent = 0
        self.coalesced = 0
        self.echoed = 0

    def send(self, groups: tuple[str, ...], message: Message, final: bool) -> None:
        """Queue ``message`` for ``groups`` (call on the publisher's loop)."""
        if self._in_memory:
            # An in-memory layer lives in this process: a group nobody joined
            # has no one to tell, and a later subscriber starts from a snapshot.
            joined = self.layer.groups
            groups = tuple(g for g in groups if joined.get(g))
            if not groups:
                return
        flow_id = message["flow_id"]
        if "state" in message:
            # Only a message that carries a state supersedes a queued state:
            # a flow.error after it must not cost subscribers the last state.
            self._latest[flow_id] = message["version"]
        shard = hash(flow_id) % SHARDS
        self._queues[shard].append((groups, message, final))
        if self._drainers[shard] is None:
            self._drainers[shard] = self.loop.create_task(self._drain(shard))

    async def _drain(self, shard: int) -> None:
        queue = self._queues[shard]
        try:
            while queue:
                groups, message, final = queue.popleft()
                flow_id, version = message["flow_id"], message["version"]
                latest = self._latest.get(flow_id, version)
                if latest == version:
                    self._latest.pop(flow_id, None)
                elif not final:
                    self.coalesced += 1
                    self._bursty.add(flow_id)
                    continue
                # A message hard on the heels of the previous one is a burst too, even
                # without a backlog here: a slow subscriber may have been skipped.
                now = self.loop.time()
                previous = self._last_sent.pop(flow_id, None)
                if not final:
                    self._last_sent[flow_id] = now
                bursty = (
                    bool(queue)
                    or flow_id in self._echoes
                    or flow_id in self._bursty
                    or (previous is not None and now - previous < BURST_SECONDS)
                )
                self._bursty.discard(flow_id)
                for group in groups:
                    await self._group_send(group, message, final)
                if final or bursty:
                    self._echo(groups[0], message, now)
                else:
                    self._echoes.pop(flow_id, None)
        finally:
            self._drainers[shard] = None

    def _echo(self, group: str, message: Message, sent_at: float) -> None:
        self._echoes[message["flow_id"]] = _Echo(group, message, sent_at)
        self._echo_added.set()
        if self._echoer is None:
            self._echoer = self.loop.create_task(self._send_echoes())

    async def _send_echoes(self) -> None:
        try:
            while self._echoes:
                self._echo_added.clear()
                wait = min(echo.due for echo in self._echoes.values()) - self.loop.time()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._echo_added.wait()
                    continue
                for flow_id, echo in list(self._echoes.items()):
                    if self._echoes.get(flow_id) is not echo or echo.due > self.loop.time():
                        continue  # replaced by a newer message meanwhile, or not yet due
                    if flow_id in self._latest:
                        # A newer message is queued: it replaces this echo when sent.
                        echo.sent_at += ECHO_POSTPONE
                        continue
                    echo.step += 1
                    if echo.step == len(ECHO_AFTER):
                        del self._echoes[flow_id]
                    self.echoed += 1
                    final = echo.message["type"] != "flow.state"
                    await self._group_send(echo.group, echo.message, final)
        finally:
            self._echoer = None

    async def flush(self, timeout: float) -> None:
        """Send every queued message, then each pending echo once more at once.

        Waits up to ``timeout`` seconds (a worker shutting down calls this).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            busy = [t for t in self._drainers if t is not None]
            if not busy:
                break
            await asyncio.wait(busy, timeout=deadline - loop.time())
        for echo in self._echoes.values():
            # Its last echo, due now.
            echo.step = len(ECHO_AFTER) - 1
            echo.sent_at = loop.time() - ECHO_AFTER[-1]
        self._echo_added.set()
        while loop.time() < deadline:
            busy = [t for t in (*self._drainers, self._echoer) if t is not None]
            if not busy:
                return
            await asyncio.wait(busy, timeout=deadline - loop.time())

    async def _group_send(self, group: str, message: Message, final: bool) -> None:
        gate = fencing.gate
        if gate is not None and gate.held():
            await gate.wait()  # worker mode: publish nothing while the lease may be lost
        attempts = FINAL_ATTEMPTS if final else 1
        for attempt in range(attempts):
            try:
                await self.layer.group_send(group, message)
                self.sent += 1
                return
            except Exception:
                last = attempt == attempts - 1
                logger.warning(
                    "flow %s: group_send of %s to %s failed%s",
                    message["flow_id"],
                    message["type"],
                    group,
                    "" if last else "; retrying",
                    exc_info=last,
                )
                if not last:
                    await asyncio.sleep(0.05 * 2**attempt)


def publisher(loop: asyncio.AbstractEventLoop) -> Publisher | None:
    """The publisher of ``loop`` (None without a channel layer)."""
    found = _publishers.get(loop)
    if found is None:
        layer = channel_layer()
        if layer is None:
            return None
        found = _publishers[loop] = Publisher(loop, layer)
    return found


def deliver(runner: FlowRunner, message: Message, final: bool) -> None:
    """Send one message of ``runner``'s flow to its group and its ``notify`` sink."""
    sink = runner.notify
    groups: tuple[str, ...] = (flow_group(runner.id),)
    if isinstance(sink, str):
        groups += (sink,)
    group_publisher = publisher(runner.loop)
    if group_publisher is not None:
        group_publisher.send(groups, message, final)
    if sink is None or isinstance(sink, str):
        return
    if isinstance(sink, asyncio.Queue):
        _put(sink, message, final, runner.loop)
        return
    try:
        result = sink(message)
        if inspect.isawaitable(result):
            runner.loop.create_task(_await(result, runner.id))
    except Exception:
        logger.exception("flow %s: notify callable %r raised", runner.id, sink)


def _put(queue: asyncio.Queue[Any], message: Message, final: bool, loop: Any) -> None:
    try:
        queue.put_nowait(message)
    except asyncio.QueueFull:
        if final:
            loop.create_task(queue.put(message))
        else:
            logger.warning("flow %s: notify queue full; dropped a state", message["flow_id"])


async def _await(result: Any, flow_id: str) -> None:
    try:
        await result
    except Exception:
        logger.exception("flow %s: async notify callable raised", flow_id)
