"""``FlowConsumer``: pushes one flow's snapshot, then its later messages, to a WebSocket.

Route it with :data:`caravela_flow.routing.websocket_urlpatterns` behind
``AllowedHostsOriginValidator(AuthMiddlewareStack(...))``. Close codes: 4403
for a missing, forged, expired or other user's token (do not retry); 4404
for a flow that is gone; 1000 once the flow has ended; 4500 when the
snapshot could not be taken or a frame could not be sent (the client
retries: daphne cannot send 1011); 4429 for a client that has read nothing
for ``STALLED_SECONDS`` while frames waited for it (the client retries and
resynchronises from the snapshot).

A socket that cannot keep up is bounded (:mod:`caravela_flow.flowcontrol`):
while its outgoing buffer holds more than the transport's buffer size, no
frame is written; only the latest state (and a final message) waits, each
newer one replacing the last, and goes out once the buffer drains.

Frames from the browser are ignored: actions go through CSRF-protected
views. Layer messages of any type other than ``flow.*`` are logged at
WARNING and dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.core.serializers.json import DjangoJSONEncoder

from .api import backend
from .conf import get_settings
from .errors import FlowNotFound
from .flowcontrol import WriteWatch, watch_writes
from .groups import flow_group
from .tokens import TokenRefused, read_token
from .types import Message
from .watch import Watch, watch

logger = logging.getLogger("caravela_flow")

CLOSE_NORMAL = 1000
#: Internal error: the client reconnects. (Daphne sends only 1000 and 3000-4999.)
CLOSE_ERROR = 4500
CLOSE_REFUSED = 4403
CLOSE_GONE = 4404
#: The client read nothing for STALLED_SECONDS while frames waited: it reconnects.
CLOSE_TOO_SLOW = 4429

#: Seconds a backed-up socket may go without draining before it is closed with 4429.
STALLED_SECONDS = 15.0

#: Seconds between attempts to receive, at most, while the channel layer fails.
RECEIVE_RETRY_MAX = 2.0

#: The layer messages a subscriber handles → the method that does (nothing else is called).
_FLOW_HANDLERS = {
    "flow.state": "flow_state",
    "flow.done": "flow_done",
    "flow.stopped": "flow_stopped",
    "flow.error": "flow_error",
}

FINAL_STATUSES = frozenset({"done", "failed", "stopped"})
#: A snapshot's status → the event (and its field) that carries it.
_SNAPSHOT_EVENTS = {
    "running": ("state", "state"),
    "done": ("done", "state"),
    "stopped": ("stopped", "state"),
    "failed": ("error", "reason"),
}


class FlowConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Subscribes one WebSocket to one flow, named by the signed token in the URL."""

    flow_id: str | None = None
    #: Version of the last message sent to the browser (None before the snapshot).
    version: int | None = None
    #: Set once the consumer has closed the socket (or is about to).
    closing: bool = False
    _group: str | None = None
    _refresher: asyncio.Task[None] | None = None
    _watch: Watch | None = None
    _writes: WriteWatch | None = None
    #: Frames held back while the socket's buffer is full: the latest state, a final one.
    _held_state: dict[str, Any] | None = None
    _held_final: dict[str, Any] | None = None
    _flusher: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # As Channels' own, but a layer that fails to receive (Redis restarting)
        # is asked again instead of crashing the consumer (daphne would close 1011).
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        try:
            if self.channel_layer is None:
                await await_many_dispatch([receive], self.dispatch)
            else:
                self.channel_name = await self._retry(self.channel_layer.new_channel)
                await await_many_dispatch([receive, self._channel_receive], self.dispatch)
        except StopConsumer:
            pass
        finally:
            # Daphne cancels instances at shutdown without calling disconnect().
            self._stop_refresher()
            self._stop_holding()
            if self._watch is not None:
                self._watch.discard(self)

    async def _channel_receive(self) -> Any:
        # Only a flow's messages come over the layer: a websocket.* message there
        # (anyone who can write to Redis can send one) would act as the browser.
        while True:
            message = await self._retry(lambda: self.channel_layer.receive(self.channel_name))
            kind = message.get("type") if isinstance(message, dict) else None
            if isinstance(kind, str) and kind in _FLOW_HANDLERS:
                return message
            logger.warning(
                "flow %s: dropped a layer message of unknown type %.60r", self.flow_id, kind
            )

    async def _retry(self, call: Any) -> Any:
        delay = 0.1
        while True:
            try:
                return await call()
            except Exception as exc:
                logger.debug("flow %s: channel layer failed (%s); retrying", self.flow_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECEIVE_RETRY_MAX)

    async def connect(self) -> None:
        """Accept, check the token, join the group, then send the snapshot."""
        await self.accept()  # before any close, or daphne loses the close code
        self._writes = watch_writes(self.base_send)
        token = self.scope.get("url_route", {}).get("kwargs", {}).get("token", "")
        try:
            self.flow_id = read_token(token, self.scope.get("user"))
        except TokenRefused as exc:
            logger.warning("refused a flow subscription: %s", exc)
            await self._close(CLOSE_REFUSED)
            return
        # Join before the snapshot: a change made meanwhile is queued, not lost.
        self._group = flow_group(self.flow_id)
        await self.channel_layer.group_add(self._group, self.channel_name)
        try:
            snapshot = await backend().asnapshot(self.flow_id)
        except FlowNotFound:
            await self._close(CLOSE_GONE)
            return
        except Exception:
            logger.exception("flow %s: could not take a snapshot for a subscriber", self.flow_id)
            await self._close(CLOSE_ERROR)
            return
        payload: dict[str, Any] = {
            "event": "snapshot",
            "flow_id": snapshot.flow_id,
            "version": snapshot.version,
            "status": snapshot.status,
            "state": snapshot.state,
        }
        if snapshot.status == "failed":
            payload["reason"] = snapshot.reason or ""
        self.version = snapshot.version
        if not await self._send(payload):
            return
        if snapshot.status in FINAL_STATUSES:
            await self._close(CLOSE_NORMAL)
            return
        if get_settings().MODE == "worker":
            self._watch = watch(self.channel_layer)
            self._watch.add(self)
        self._refresher = asyncio.create_task(
            self._refresh_membership(), name=f"caravela-flow subscription {self.flow_id}"
        )

    async def dispatch(self, message: Message) -> None:
        """Forward the flow's messages straight away.

        Channels' own dispatch first closes stale database connections, which
        costs a hop to a thread per message; forwarding touches no database.
        """
        kind = message.get("type") if isinstance(message, dict) else None
        if not isinstance(kind, str):
            logger.warning("flow %s: dropped a layer message with no type", self.flow_id)
            return
        handler = _FLOW_HANDLERS.get(kind)
        if handler is not None:
            await getattr(self, handler)(message)
        elif kind.startswith("websocket."):
            await super().dispatch(message)
        else:
            logger.warning("flow %s: dropped a message of unknown type %.60r", self.flow_id, kind)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Ignore what the browser sends."""

    async def disconnect(self, code: int) -> None:
        """Stop renewing the membership and leave the flow's group."""
        self.closing = True
        self._stop_refresher()
        self._stop_holding()
        if self._watch is not None:
            self._watch.discard(self)
        if self._group is not None:
            group, self._group = self._group, None
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:
                logger.exception("could not leave group %s", group)

    # -- the flow's messages (group_send types flow.state, flow.done …) -----

    async def flow_state(self, message: Message) -> None:
        await self._forward(message, "state", "state")

    async def flow_done(self, message: Message) -> None:
        await self._forward(message, "done", "state", final=True)

    async def flow_stopped(self, message: Message) -> None:
        await self._forward(message, "stopped", "state", final=True)

    async def flow_error(self, message: Message) -> None:
        await self._forward(message, "error", "reason", final=True)

    async def _forward(self, message: Message, event: str, field: str, final: bool = False) -> None:
        """Send ``message`` if it is newer than the last one sent; close after a final one."""
        version = message.get("version")
        if (
            self.closing
            or self.version is None
            or message.get("flow_id") != self.flow_id
            or not isinstance(version, int)
            or version <= self.version
        ):
            return
        value = message.get(field)
        payload = {"event": event, "flow_id": self.flow_id, "version": version, field: value}
        try:
            if not isinstance(value, dict if field == "state" else str):
                raise TypeError(f"its {field} is a {type(value).__name__}")
            text = json.dumps(payload, cls=DjangoJSONEncoder)
        except (TypeError, ValueError) as exc:
            # Only a forged message can be this: the runner checks what it publishes.
            logger.warning("flow %s: dropped a malformed %s message: %s", self.flow_id, event, exc)
            return
        self.version = version
        writes = self._writes
        if writes is not None and (writes.paused or self._flusher is not None):
            self._hold(payload, final)
        elif await self._send(text, event) and final:
            await self._close(CLOSE_NORMAL)

    # -- a socket that cannot keep up ------------------------------------------

    def _hold(self, payload: dict[str, Any], final: bool) -> None:
        """Keep ``payload`` until the socket drains, in place of an older held one."""
        if final:
            self._held_final = payload
        else:
            self._held_state = payload
        if self._flusher is None:
            self._flusher = asyncio.create_task(
                self._send_held(), name=f"caravela-flow held frames {self.flow_id}"
            )

    async def _send_held(self) -> None:
        writes = self._writes
        assert writes is not None
        try:
            while not self.closing and (self._held_state or self._held_final):
                if not await writes.drained(STALLED_SECONDS):
                    logger.warning(
                        "flow %s: a subscriber read nothing for %g s; closing it (%d)",
                        self.flow_id,
                        STALLED_SECONDS,
                        CLOSE_TOO_SLOW,
                    )
                    self._held_state = self._held_final = None
                    await self._close(CLOSE_TOO_SLOW)
                    return
                if self.closing or writes.stopped:
                    return
                final = self._held_state is None
                payload = self._held_final if final else self._held_state
                if final:
                    self._held_final = None
                else:
                    self._held_state = None
                assert payload is not None
                if not await self._send(payload):
                    return
                if final:
                    await self._close(CLOSE_NORMAL)
                    return
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None

    def _stop_holding(self) -> None:
        self._held_state = self._held_final = None
        task, self._flusher = self._flusher, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        writes, self._writes = self._writes, None
        if writes is not None:
            writes.detach()

    # -- faults (worker mode, called by the loop's Watch) ------------------------

    async def resync(self) -> None:
        """Redis restarted: join the group again; forward the snapshot if it is newer."""
        if self.closing or self._group is None or self.flow_id is None:
            return
        try:
            await self.channel_layer.group_add(self._group, self.channel_name)
            snapshot = await backend().asnapshot(self.flow_id)
        except FlowNotFound:
            await self._close(CLOSE_GONE)
            return
        except Exception as exc:
            logger.warning("flow %s: could not re-synchronise a subscriber: %s", self.flow_id, exc)
            await self._close(CLOSE_ERROR)  # the client reconnects and asks again
            return
        kind, field = _SNAPSHOT_EVENTS.get(snapshot.status, ("state", "state"))
        message = {
            "type": f"flow.{kind}",
            "flow_id": snapshot.flow_id,
            "version": snapshot.version,
            "state": snapshot.state,
            "reason": snapshot.reason or "",
        }
        await self._forward(message, kind, field, final=snapshot.status in FINAL_STATUSES)

    async def gone(self) -> None:
        """The directory no longer knows the flow."""
        logger.info("flow %s: gone from the directory; closing its subscriber", self.flow_id)
        await self._close(CLOSE_GONE)

    async def lost(self) -> None:
        """The flow's worker is lost and nobody adopted it: the client reconnects and asks."""
        logger.warning("flow %s: its worker is lost and not yet replaced", self.flow_id)
        await self._close(CLOSE_ERROR)

    # -- helpers -------------------------------------------------------------

    async def _send(self, payload: dict[str, Any] | str, event: str = "") -> bool:
        """Send one JSON frame; on failure log it and close with 4500 (the client retries)."""
        try:
            if isinstance(payload, dict):
                event = str(payload.get("event"))
                payload = json.dumps(payload, cls=DjangoJSONEncoder)
            await self.send(text_data=payload)
        except Exception:
            logger.exception(
                "flow %s: could not send a %s event to a subscriber", self.flow_id, event
            )
            await self._close(CLOSE_ERROR)
            return False
        return True

    async def _close(self, code: int) -> None:
        if self.closing:
            return
        self.closing = True
        self._stop_refresher()
        if code != CLOSE_NORMAL:
            self._held_state = self._held_final = None
        try:
            await self.close(code=code)
        except Exception:
            logger.exception("flow %s: could not close a subscriber's socket", self.flow_id)

    async def _refresh_membership(self) -> None:
        """Renew the group membership before the layer expires it (channels-redis: 24 h)."""
        interval = get_settings().GROUP_REFRESH_SECONDS
        while True:
            await asyncio.sleep(interval)
            group = self._group
            if group is None:
                return
            try:
                await self.channel_layer.group_add(group, self.channel_name)
            except Exception:
                logger.exception("flow %s: could not renew the group membership", self.flow_id)

    def _stop_refresher(self) -> None:
        task, self._refresher = self._refresher, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()


class NoRouteConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Refuses a WebSocket whose path no route matched: close code 4404, one WARNING.

    Put :data:`caravela_flow.routing.fallback_route` last in your ``URLRouter``
    so an unknown path is not an HTTP 500 with a traceback.
    """

    async def connect(self) -> None:
        await self.accept()  # before the close, or daphne loses the code
        logger.warning("refused a WebSocket to %.200r: no route matches it", self.scope.get("path"))
        await self.close(code=CLOSE_GONE)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Ignore what the browser sends."""
