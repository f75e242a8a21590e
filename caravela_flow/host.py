"""Worker mode, worker side: the host that runs flows for callers in other processes.

One :class:`WorkerHost` per ``runworker`` process. It owns a channel of its
own (independent of any consumer instance, which Channels may replace) and
a receive loop on it; callers find it through the directory in Redis
(:mod:`caravela_flow.directory`) and send requests straight to its channel.
Its leases are kept by :mod:`caravela_flow.leases`. Runners are ordinary
supervised runners on the worker's loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import socket
import time
import uuid
from collections import OrderedDict
from typing import Any

from channels.exceptions import ChannelFull

from . import fencing
from .addressing import resolve_flow, workers_group
from .callables import resolve_function
from .conf import get_settings
from .directory import Directory
from .errors import FlowArgumentError, FlowError, FlowNotFound
from .groups import is_group_name
from .handle import is_flow_id
from .leases import Leases
from .loops import cancel_and_wait
from .notify import deliver, publisher
from .receiving import messages
from .runner import FlowRunner
from .state import StateError, check_state, wire_state
from .supervisor import supervisor
from .types import Message

logger = logging.getLogger("caravela_flow.worker")

#: How many answered request ids a host remembers, to answer repeats without redoing them.
REMEMBERED = 20_000
#: Offers a host keeps open at once (callers accept within milliseconds; more is a flood).
MAX_OFFERS = 10_000
SHUTDOWN_REASON = "worker shutting down"
#: Seconds between renewals of the workers group membership, at least.
SWEEP_SECONDS = 30.0
#: Requests a fenced host drops unanswered: the caller asks again, maybe elsewhere.
_HELD_BACK = frozenset(
    {"caravela.start", "caravela.accept", "caravela.signal", "caravela.get_state"}
    | {"caravela.snapshot", "caravela.stop", "caravela.inspect"}
)

_IN_PROGRESS: dict[str, Any] = {}
#: What Channels accepts as a channel name (``BaseChannelLayer.channel_name_regex``).
_CHANNEL = re.compile(r"[a-zA-Z\d\-_.]+(![\d\w\-_.]*)?")
MAX_CHANNEL = 100


class WorkerHost:
    """Hosts flows in this worker process."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        #: This host's id in the directory.
        self.id = uuid.uuid4().hex
        self.channel: str | None = None
        self.accepting = True
        self.offers: dict[str, tuple[dict[str, Any], asyncio.TimerHandle]] = {}
        self.answers: OrderedDict[str, dict[str, Any]] = OrderedDict()
        #: The start spec of every running flow (what a take-back re-registers).
        self.specs: dict[str, dict[str, Any]] = {}
        #: Flows being stopped because another worker adopted them: they send nothing.
        self.silenced: set[str] = set()
        self.leases: Leases | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._endings: set[asyncio.Task[Any]] = set()
        self._started = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Open the host's channel, join the workers group and start receiving."""
        self.channel = await self.layer.new_channel()
        self.leases = Leases(self, Directory(self.layer))
        await self.leases.beat()
        try:
            await self.layer.group_add(workers_group(), self.channel)
        except Exception as exc:
            logger.warning("worker host: could not join the workers group yet: %s", exc)
        self._spawn(self._receive())
        self._spawn(self._maintain())
        self._spawn(self.leases.keep())
        self._started.set()
        logger.info("caravela_flow worker host ready on %s", self.channel)

    async def ready(self) -> None:
        """Wait until :meth:`start` has finished."""
        await self._started.wait()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the host owns (cancelled at shutdown)."""
        return self._spawn(coro)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def shutdown(self) -> None:
        """Stop taking flows; end every hosted flow with ``flow.error``; flush messages."""
        self.accepting = False
        timeout = get_settings().SHUTDOWN_TIMEOUT
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for _, timer in self.offers.values():
            timer.cancel()
        self.offers.clear()
        tasks = []
        for info in supervisor.flows():
            if info.status == "running":
                try:
                    task = supervisor.stop(info.id, SHUTDOWN_REASON)
                except FlowNotFound:
                    continue
                if task is not None:
                    tasks.append(task)
        logger.info("worker shutting down: stopping %d flows", len(tasks))
        if tasks:
            await asyncio.wait(tasks, timeout=max(deadline - loop.time(), 0) / 2)
        pub = publisher(loop)
        if pub is not None:
            await pub.flush(max(deadline - loop.time(), 0))
        if self._endings:
            await asyncio.wait(list(self._endings), timeout=max(deadline - loop.time(), 0.5))
        if self.leases is not None:
            await self.leases.leave()
        await cancel_and_wait(list(self._tasks), max(deadline - loop.time(), 1.0))

    async def _receive(self) -> None:
        assert self.channel is not None
        async for message in messages(self.layer, self.channel, "worker host"):
            self.handle(message)

    async def _maintain(self) -> None:
        conf = get_settings()
        refreshed = time.monotonic()
        while True:
            await asyncio.sleep(min(SWEEP_SECONDS, conf.GROUP_REFRESH_SECONDS))
            if time.monotonic() - refreshed < conf.GROUP_REFRESH_SECONDS:
                continue
            try:
                # Group membership expires (channels-redis group_expiry): renew it.
                await self.layer.group_add(workers_group(), self.channel)
                refreshed = time.monotonic()
            except Exception as exc:
                logger.warning("worker host: could not renew the workers group: %s", exc)

    # -- the flows' lifecycle --------------------------------------------------

    def publish(self, runner: FlowRunner, message: Message, final: bool) -> None:
        """Deliver a hosted flow's message; at its end, record it in the directory."""
        if runner.id in self.silenced:
            if final:
                self.silenced.discard(runner.id)
                self.specs.pop(runner.id, None)
            return
        deliver(runner, message, final)
        if final:
            spec = self.specs.pop(runner.id, None)
            if spec is not None and self.leases is not None:
                task = self._spawn(self._record_end(runner.id, spec))
                self._endings.add(task)
                task.add_done_callback(self._endings.discard)

    async def _record_end(self, flow_id: str, spec: dict[str, Any]) -> None:
        assert self.leases is not None
        retain = get_settings().RETAIN_SECONDS
        for attempt in range(8):
            try:
                await self.leases.directory.finish(self.id, flow_id, spec, retain)
                return
            except Exception as exc:
                if attempt == 7:
                    logger.warning("worker host: could not record the end of %s: %s", flow_id, exc)
                await asyncio.sleep(0.1 * 2**attempt)

    def drop_silently(self, flow_id: str) -> None:
        """Stop this host's copy of a flow another worker adopted; it sends nothing."""
        self.specs.pop(flow_id, None)
        self.silenced.add(flow_id)
        try:
            task = supervisor.stop(flow_id)
        except FlowNotFound:
            self.silenced.discard(flow_id)
            return
        if task is not None:
            task.add_done_callback(lambda _: supervisor.forget(flow_id))

    # -- messages ------------------------------------------------------------

    def handle(self, message: Any) -> None:
        """Dispatch one message from the host's channel; bad messages are logged and dropped."""
        kind = message.get("type") if isinstance(message, dict) else None
        gate = fencing.gate
        if gate is not None and gate.held() and kind in _HELD_BACK:
            return  # this host may have lost its lease: the caller asks again
        try:
            handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
            if handler is None:
                logger.warning("worker host: dropped a message of unknown type %.100r", kind)
                return
            handler(self, message)
        except (KeyError, TypeError, ValueError, FlowError) as exc:
            logger.warning("worker host: refused a malformed %.60s message: %.200s", kind, exc)
        except Exception:
            logger.exception("worker host: dropped a %s message it could not handle", kind)

    def offer(self, message: dict[str, Any]) -> None:
        """A caller asks for a new flow: offer to host it (``caravela.start``)."""
        request, reply = _text(message, "request"), _reply_channel(message)
        if not self.accepting or self.channel is None:
            return
        if request in self.offers or request in self.answers:
            # The same start delivered again (channels-redis may), maybe after its
            # flow started here: a refusal now would fail the caller's start.
            return
        if len(self.offers) >= MAX_OFFERS:
            logger.warning("worker host: refused a start request: %d offers are open", MAX_OFFERS)
            return
        expires = message.get("expires")
        if isinstance(expires, (int, float)) and expires < time.time():
            logger.info("worker host: ignored an expired start request")
            return
        try:
            definition = resolve_flow(message.get("flow"))
            state = check_state(message.get("state"), "state")
            notify = message.get("notify")
            if notify is not None and not (isinstance(notify, str) and is_group_name(notify)):
                raise FlowArgumentError(f"notify must be a group name, got {notify!r:.80}")
            flow_id = _text(message, "flow_id")
            if not is_flow_id(flow_id) or flow_id in supervisor:
                raise FlowArgumentError(f"flow id {flow_id!r} is malformed or already in use")
            key = message.get("key")
            if key is not None and not (isinstance(key, str) and 0 < len(key) <= 200):
                raise FlowArgumentError(f"key must be a short non-empty string, got {key!r:.80}")
        except (FlowError, KeyError) as exc:
            logger.warning("worker host: refused a start request: %s", exc)
            refusal = {"type": "caravela.refuse", "request": request, **_failure(exc)}
            self._reply(reply, refusal, remember=False)
            return
        loop = asyncio.get_running_loop()
        timer = loop.call_later(get_settings().START_TIMEOUT * 2, self.offers.pop, request, None)
        self.offers[request] = ({**message, "definition": definition, "state": state}, timer)
        offer = {"type": "caravela.offer", "request": request, "worker": self.channel}
        self._reply(reply, offer, remember=False)

    def _accept(self, message: dict[str, Any]) -> None:
        request, reply = _text(message, "request"), _reply_channel(message)
        if self._repeat(request, message):
            return
        pending = self.offers.pop(request, None)
        if pending is None or not self.accepting:
            answer = {"type": "caravela.refuse", "request": request, "error": "expired"}
            self._reply(reply, answer, remember=False)
            return
        start, timer = pending
        timer.cancel()
        self.answers[request] = _IN_PROGRESS
        self._spawn(self._launch(start, reply))

    async def _launch(self, start: dict[str, Any], reply: str) -> None:
        request, flow_id = start["request"], start["flow_id"]
        definition, state = start["definition"], start["state"]
        spec = {
            "flow": definition.key,
            "state": wire_state(state),
            "notify": start.get("notify"),
            "key": start.get("key"),
        }
        assert self.leases is not None
        try:
            await self.leases.directory.register(self.id, flow_id, spec)
        except Exception as exc:
            logger.warning("worker host: could not record flow %s in Redis: %s", flow_id, exc)
            self.answers.pop(request, None)
            return
        runner = supervisor.launch(
            definition, state, start.get("notify"), flow_id=flow_id, publish=self.publish
        )
        runner.key = spec["key"]
        self.specs[flow_id] = spec
        logger.info("started flow %s (%s)", runner.id, runner.definition.key)
        started = {"type": "caravela.started", "request": request, "flow_id": flow_id}
        self._reply(reply, {**started, "worker": self.channel})

    def _decline(self, message: dict[str, Any]) -> None:
        pending = self.offers.pop(_text(message, "request"), None)
        if pending is not None:
            pending[1].cancel()

    def _signal(self, message: dict[str, Any]) -> None:
        def apply(flow_id: str) -> dict[str, Any]:
            if "fn" in message:
                fn = resolve_function(message["fn"])
                args = message.get("args") or []
                if not isinstance(args, list):
                    raise FlowArgumentError("signal args must be a list")
                supervisor.signal(flow_id, fn, tuple(args))
            else:
                supervisor.signal(flow_id, check_state(message.get("update"), "signal update"))
            return {}

        self._answer(message, apply)

    def _get_state(self, message: dict[str, Any]) -> None:
        self._answer(message, lambda flow_id: {"state": supervisor.snapshot(flow_id).state})

    def _snapshot(self, message: dict[str, Any]) -> None:
        def snap(flow_id: str) -> dict[str, Any]:
            s = supervisor.snapshot(flow_id)
            return {"snapshot": dataclasses.asdict(s)}

        self._answer(message, snap)

    def _stop(self, message: dict[str, Any]) -> None:
        request, reply, flow_id = _addressed(message)
        if self._repeat(request, message):
            return
        try:
            task = supervisor.stop(flow_id)
        except FlowError as exc:
            self._reply(reply, {"type": "caravela.reply", "request": request, **_failure(exc)})
            return
        self.answers[request] = _IN_PROGRESS

        async def settle() -> None:
            if task is not None:
                await asyncio.wait([task], timeout=get_settings().REQUEST_TIMEOUT / 2)
            self._reply(reply, {"type": "caravela.reply", "request": request, "ok": True})

        self._spawn(settle())

    def _inspect(self, message: dict[str, Any]) -> None:
        def details(flow_id: str) -> dict[str, Any]:
            return {"details": {**supervisor.details(flow_id), **_where()}}

        self._answer(message, details)

    def _list(self, message: dict[str, Any]) -> None:
        request = _text(message, "request")
        where = _where()
        flows = [{**dataclasses.asdict(info), **where} for info in supervisor.flows()]
        answer = {"type": "caravela.flows", "request": request, "worker": self.id, "flows": flows}
        self._reply(_reply_channel(message), answer, remember=False)

    # -- replies -------------------------------------------------------------

    def _answer(self, message: dict[str, Any], work: Any) -> None:
        request, reply, flow_id = _addressed(message)
        if self._repeat(request, message):
            return
        try:
            answer = {"type": "caravela.reply", "request": request, "ok": True, **work(flow_id)}
        except (FlowError, StateError) as exc:
            if not isinstance(exc, FlowNotFound):
                logger.warning(
                    "worker host: refused %s for flow %.40s: %s", message["type"], flow_id, exc
                )
            answer = {"type": "caravela.reply", "request": request, **_failure(exc)}
        self._reply(reply, answer)

    def _repeat(self, request: str, message: dict[str, Any]) -> bool:
        """Answer a request seen before (or one past its expiry) without doing it."""
        # A caller that got no answer in time sends the same request again.
        answer = self.answers.get(request)
        if answer is None:
            expires = message.get("expires")
            if isinstance(expires, (int, float)) and expires < time.time():
                # Its caller is about to give up: doing it now would be applied
                # but reported failed. Every later copy gets the same answer.
                logger.info("worker host: refused an expired %s request", message.get("type"))
                late = {"type": "caravela.reply", "request": request, "ok": False}
                self._reply(_text(message, "reply"), {**late, "error": "expired"})
                return True
            return False
        if answer is not _IN_PROGRESS:
            self._reply(_reply_channel(message), answer, remember=False)
        return True

    def _reply(self, channel: str, answer: dict[str, Any], remember: bool = True) -> None:
        if remember:
            self.answers[answer["request"]] = answer
            while len(self.answers) > REMEMBERED:
                self.answers.popitem(last=False)
        self._spawn(self._send(channel, answer))

    async def _send(self, channel: str, answer: dict[str, Any]) -> None:
        delay = 0.01
        for _ in range(10):
            try:
                await self.layer.send(channel, answer)
                return
            except ChannelFull:
                await asyncio.sleep(delay)
                delay *= 2
            except Exception:
                logger.warning("worker host: could not answer %s", answer["type"], exc_info=True)
                return
        logger.warning("worker host: %s's channel stayed full; answer dropped", channel)


def _text(message: dict[str, Any], key: str) -> str:
    value = message[key]
    if not isinstance(value, str) or not value:
        raise KeyError(f"{key} must be a non-empty string")
    return value


def _reply_channel(message: dict[str, Any]) -> str:
    # Checked before anything is done, so a message naming a channel no layer
    # can send to is refused once, not answered into an error.
    value = message["reply"]
    if not isinstance(value, str) or len(value) >= MAX_CHANNEL or not _CHANNEL.fullmatch(value):
        raise KeyError(f"reply must be a channel name, got {value!r:.80}")
    return value


def _addressed(message: dict[str, Any]) -> tuple[str, str, str]:
    """A request's id, reply channel and flow id (``KeyError`` if one is malformed)."""
    return _text(message, "request"), _reply_channel(message), _text(message, "flow_id")


def _failure(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, FlowNotFound):
        error = "not_found"
    elif isinstance(exc, (FlowArgumentError, StateError, KeyError)):
        error = "bad_request"
    else:
        error = "failed"
    return {"ok": False, "error": error, "message": str(exc)}


_HANDLERS: dict[str, Any] = {
    "caravela.start": WorkerHost.offer,
    "caravela.accept": WorkerHost._accept,
    "caravela.decline": WorkerHost._decline,
    "caravela.signal": WorkerHost._signal,
    "caravela.get_state": WorkerHost._get_state,
    "caravela.snapshot": WorkerHost._snapshot,
    "caravela.stop": WorkerHost._stop,
    "caravela.list": WorkerHost._list,
    "caravela.inspect": WorkerHost._inspect,
}


def _where() -> dict[str, Any]:
    """Where this process's flows run, as ``caravela.list`` and ``caravela.inspect`` say."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


_host: WorkerHost | None = None


async def get_host(layer: Any) -> WorkerHost:
    """This process's host, started on first use."""
    global _host
    if _host is None:
        _host = WorkerHost(layer)
        await _host.start()
    else:
        await _host.ready()
    return _host
