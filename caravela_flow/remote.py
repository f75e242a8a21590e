"""Worker mode, caller side: reaching runners in ``runworker`` processes.

Every call goes through a :class:`Client`: one per event loop (sync callers
share the background loop's). It owns a private channel layer instance and
a reply channel it receives on, so it never competes with the ASGI server's
consumers for the shared layer, and an async caller reaches Redis without a
hop to another thread.

- ``start`` sends to the ``caravela-flows`` channel; each worker that gets
  the message *offers* to host the flow, and the caller accepts exactly one
  offer. A named-channel message can reach two workers with channels-redis,
  so the handshake, not the delivery, makes a start happen once. No offer in
  ``START_TIMEOUT`` → :class:`NoWorkerAvailable`, and offers that arrive
  later are never accepted, so nothing starts by surprise.
- ``signal``/``get_state``/``stop`` find the flow's host in the directory
  (:mod:`caravela_flow.directory`) and go straight to its channel. Each
  request carries an id and waits for the reply; with no reply it is sent
  again (the host answers a repeated id from its memory instead of applying
  it twice), looking the flow up afresh (it may have been adopted), until
  ``REQUEST_TIMEOUT``, then raises :class:`FlowUnreachable`. A signal is
  applied or its call raises. An id the directory does not know raises
  :class:`FlowNotFound` at once.
- ``start(..., key=...)`` first claims the key with a ``SET NX`` in Redis;
  a caller that loses the race waits for the winner's flow and returns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from channels.exceptions import ChannelFull
from channels.layers import channel_layers

from .addressing import workers_group
from .callables import function_path
from .conf import get_settings
from .directory import Directory
from .errors import (
    FlowArgumentError,
    FlowError,
    FlowNotFound,
    FlowTimeout,
    FlowUnreachable,
    NoWorkerAvailable,
)
from .handle import FlowHandle
from .loops import background_loop, cancel_and_wait, running_loop
from .receiving import messages
from .state import wire_state
from .supervisor import FlowInfo, Snapshot, Survey
from .types import State

logger = logging.getLogger("caravela_flow")

T = TypeVar("T")

#: Seconds before an unanswered request is sent again, at least (then doubling, capped).
FIRST_RETRY = 1.0
MAX_RETRY = 2.0
#: A request is sent again only once its reply is this many times later than usual:
#: under load, repeats would only add work to a worker that is slow, not gone.
RETRY_FACTOR = 3.0
#: Seconds between attempts to send to a full channel (doubling, capped).
FULL_RETRY = 0.01
MAX_FULL_RETRY = 0.05
#: Seconds, at most, between a request's expiry at the host and the caller giving up.
EXPIRY_GRACE = 1.0
#: A channel's capacity when the layer does not say (channels-redis's default).
DEFAULT_CAPACITY = 100
#: Seconds :meth:`Client.close` waits for its tasks to end.
CLOSE_SECONDS = 5.0
#: Seconds between looks in the directory for a flow with no reachable host.
ROUTE_POLL = 0.25
#: Seconds between looks at a key whose flow another caller is starting.
KEY_POLL = 0.05
#: Routes remembered per client (then forgotten all at once).
MAX_ROUTES = 50_000


class _ChannelSlots:
    """Per destination channel, how many of this process's requests may await a reply.

    A full channel makes the layer refuse sends (and group_send skip it
    silently): this keeps one process's requests to a host below its
    channel's capacity. Slots are counted per host, so requests to a dead
    host never take the slots of a live one.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._channels: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    async def take(self, channel: str, deadline: float) -> bool:
        entry = self._channels.get(channel)
        if entry is None:
            entry = self._channels[channel] = (asyncio.Semaphore(self.size), [0])
        free, users = entry
        users[0] += 1
        try:
            async with asyncio.timeout_at(deadline):
                await free.acquire()
        except TimeoutError:
            self._leave(channel)
            return False
        return True

    def give(self, channel: str) -> None:
        self._channels[channel][0].release()
        self._leave(channel)

    def _leave(self, channel: str) -> None:
        users = self._channels[channel][1]
        users[0] -= 1
        if not users[0]:
            del self._channels[channel]


class _Turns:
    """Senders waiting for room in one full channel, in order of arrival."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.waiting = 0


class Client:
    """The caller side of worker mode, on one event loop."""

    def __init__(self) -> None:
        self.layer: Any = None
        self.channel: str | None = None
        self._waiters: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._ready: asyncio.Lock | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Smoothed seconds from sending a request to its reply.
        self.latency = 0.0
        #: Starts under way (at most half the layer's channel capacity).
        self.in_flight = 0
        self._slots: asyncio.Semaphore | None = None
        #: Requests to each host awaiting their first reply, at most as many per host.
        self._slots_of = _ChannelSlots(DEFAULT_CAPACITY // 2)
        self.directory: Directory | None = None
        #: Flow id → its host's channel, as last found in the directory.
        self._routes: dict[str, str] = {}
        #: Channel → this process's senders waiting for room in it (while it is full).
        self._full: dict[str, _Turns] = {}

    async def _connect(self) -> None:
        if self.channel is not None:
            return
        if self._ready is None:
            self._ready = asyncio.Lock()
        async with self._ready:
            if self.channel is None:
                alias = get_settings().CHANNEL_LAYER
                self.layer = channel_layers.make_backend(alias)
                capacity = getattr(self.layer, "capacity", DEFAULT_CAPACITY)
                self._slots = asyncio.Semaphore(max(1, int(capacity) // 2))
                self._slots_of = _ChannelSlots(max(1, int(capacity) // 2))
                self.directory = Directory(self.layer)
                self.channel = await self.layer.new_channel()
                self._receiver = asyncio.get_running_loop().create_task(self._receive())

    async def _receive(self) -> None:
        assert self.channel is not None
        async for message in messages(self.layer, self.channel, "caravela_flow client"):
            request = message.get("request") if isinstance(message, dict) else None
            if not isinstance(request, str):
                logger.warning(
                    "caravela_flow client: dropped a reply with no request id: %.200r", message
                )
                continue
            queue = self._waiters.get(request)
            if queue is not None:
                queue.put_nowait(message)

    async def _send(self, channel: str, message: dict[str, Any], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.01
        while True:
            try:
                await self.layer.send(channel, message)
                return
            except ChannelFull:
                if loop.time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def _take_slot(self, deadline: float) -> bool:
        # A full channel makes group_send skip it silently: keep this process's
        # requests (and so their replies) below the channels' capacity.
        assert self._slots is not None
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            return False
        self.in_flight += 1
        return True

    def _release_slot(self) -> None:
        assert self._slots is not None
        self.in_flight -= 1
        self._slots.release()

    async def _next(self, queue: asyncio.Queue[dict[str, Any]], seconds: float) -> dict[str, Any]:
        async with asyncio.timeout(max(seconds, 0)):
            return await queue.get()

    # -- start -------------------------------------------------------------

    async def start(
        self, key: str, state: State, notify: str | None, flow_key: str | None = None
    ) -> str:
        """Have one worker host a new flow (or find the running one of ``flow_key``)."""
        await self._connect()
        timeout = get_settings().START_TIMEOUT
        deadline = asyncio.get_running_loop().time() + timeout
        flow_id = uuid.uuid4().hex
        key_name = ""
        if flow_key is not None:
            key_name, holder = await self._claim(key, flow_key, flow_id, deadline, timeout)
            if holder != flow_id:
                return holder
        if not await self._take_slot(deadline):
            await self._quiet_release(key_name, flow_id)
            raise NoWorkerAvailable(
                f"flow {key}: start not sent within {timeout:g} s: this process "
                f"already had {self.in_flight} requests in flight"
            )
        try:
            return await self._start(key, state, notify, flow_id, flow_key, deadline, timeout)
        except BaseException:
            await self._quiet_release(key_name, flow_id)
            raise
        finally:
            self._release_slot()

    async def _claim(
        self, key: str, flow_key: str, flow_id: str, deadline: float, timeout: float
    ) -> tuple[str, str]:
        """Take the key for ``flow_id``, or wait until its holder is registered; → holder."""
        assert self.directory is not None
        loop = asyncio.get_running_loop()
        name = self.directory.key_name(key, flow_key)
        problem = "another caller's start of it did not complete"
        while loop.time() < deadline:
            try:
                holder = await self.directory.claim_key(name, flow_id, timeout * 2 + 1)
                if holder == flow_id or (await self.directory.route(holder)).owner:
                    return name, holder
            except Exception as exc:  # Redis is out of reach: try again until the deadline
                problem = _no_redis(exc)
            await asyncio.sleep(KEY_POLL)
        raise NoWorkerAvailable(f"flow {key} with key {flow_key!r}: {problem} within {timeout:g} s")

    async def _quiet_release(self, key_name: str, flow_id: str) -> None:
        if key_name and self.directory is not None:
            try:
                await self.directory.release_key(key_name, flow_id)
            except Exception:
                logger.debug("caravela_flow client: could not release key %s", key_name)

    async def _start(
        self,
        key: str,
        state: State,
        notify: str | None,
        flow_id: str,
        flow_key: str | None,
        deadline: float,
        timeout: float,
    ) -> str:
        conf = get_settings()
        loop = asyncio.get_running_loop()
        request = uuid.uuid4().hex
        queue = self._waiters[request] = asyncio.Queue()
        accepted: str | None = None
        accept = {"type": "caravela.accept", "request": request, "reply": self.channel}
        problem = f"is `manage.py runworker {conf.WORKER_CHANNEL}` running?"
        try:
            await self._send(
                conf.WORKER_CHANNEL,
                {
                    "type": "caravela.start",
                    "request": request,
                    "reply": self.channel,
                    "flow_id": flow_id,
                    "flow": key,
                    "state": wire_state(state),
                    "notify": notify,
                    "key": flow_key,
                    "expires": time.time() + timeout,
                },
                deadline,
            )
            while True:
                wait = deadline - loop.time()
                if accepted is not None:
                    wait = min(wait, FIRST_RETRY)
                try:
                    reply = await self._next(queue, wait)
                except TimeoutError:
                    if accepted is None or loop.time() >= deadline:
                        raise
                    await self._send(accepted, accept, deadline)  # the accept may be lost
                    continue
                kind, worker = reply.get("type"), reply.get("worker")
                if kind == "caravela.offer" and isinstance(worker, str):
                    if accepted is None:
                        accepted = worker
                        await self._send(worker, accept, deadline)
                    elif worker != accepted:
                        decline = {"type": "caravela.decline", "request": request}
                        self._background(self._quiet_send(worker, decline))
                elif kind == "caravela.started":
                    if isinstance(worker, str):
                        self._routes[flow_id] = worker
                    return flow_id
                elif kind == "caravela.refuse" and accepted in (None, worker):
                    if reply.get("error") == "expired":
                        raise NoWorkerAvailable(
                            f"flow {key}: the worker withdrew its offer "
                            "(it is shutting down, or the offer expired)"
                        )
                    raise _error(reply)
        except FlowError:
            raise
        except Exception as exc:
            if not isinstance(exc, (TimeoutError, ChannelFull)):
                problem = _no_redis(exc)
            if accepted is not None:  # it may have started after all: stop it
                self._background(self._quiet_stop(flow_id))
            raise NoWorkerAvailable(
                f"no worker took flow {key} within {timeout:g} s; {problem}"
            ) from None
        finally:
            del self._waiters[request]

    async def _quiet_send(self, channel: str, message: dict[str, Any]) -> None:
        try:
            await self.layer.send(channel, message)
        except Exception:
            logger.debug("caravela_flow client: could not send %s", message["type"])

    async def _quiet_stop(self, flow_id: str) -> None:
        with contextlib.suppress(FlowError):
            await self.request(flow_id, "stop", {})

    async def close(self) -> None:
        """Stop receiving and close the layer's connections (call on the client's loop)."""
        tasks = [t for t in (self._receiver, *self._tasks) if t is not None]
        await cancel_and_wait(tasks, CLOSE_SECONDS)
        self._receiver = None
        if self.layer is not None and hasattr(self.layer, "close_pools"):
            await self.layer.close_pools()

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- requests to one flow ----------------------------------------------

    async def request(self, flow_id: str, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Send a request to the flow's host and return its reply (retrying until answered).

        The host is found in the directory. A flow the directory does not know
        fails at once with :class:`FlowNotFound`; one whose worker was lost, or
        while Redis is out of reach, is asked again until ``REQUEST_TIMEOUT``,
        then :class:`FlowUnreachable`. A request holds one of this process's
        slots *for its host's channel* until its first wait ends: calls to a
        dead host use up only that host's slots, so they never hold up calls
        to live ones.
        """
        await self._connect()
        loop = asyncio.get_running_loop()
        timeout = get_settings().REQUEST_TIMEOUT
        deadline = loop.time() + timeout
        request = uuid.uuid4().hex
        # The host applies no copy of the request that reaches it after ``expires``
        # (it answers "expired"): one applied in time has ``grace`` s for its answer.
        grace = min(EXPIRY_GRACE, timeout / 4)
        message = {
            "type": f"caravela.{kind}",
            "request": request,
            "reply": self.channel,
            "flow_id": flow_id,
            "expires": time.time() + timeout - grace,
            **fields,
        }
        queue = self._waiters[request] = asyncio.Queue()
        #: The channel whose slot this request holds (until its first wait ends).
        holding: str | None = None
        first = True
        try:
            # Late for the usual round trip, but with time left for at least one repeat.
            wait = max(FIRST_RETRY, min(RETRY_FACTOR * self.latency, timeout / 2))
            problem = "no answer"
            sent = loop.time()
            while True:
                channel, problem = await self._locate(flow_id, problem)
                if channel is not None and first and holding != channel:
                    if holding is not None:
                        self._slots_of.give(holding)
                        holding = None
                    if not await self._slots_of.take(channel, deadline):
                        raise FlowTimeout(
                            f"flow {flow_id}: {kind} not sent within {timeout:g} s: this "
                            "process's requests to its worker stayed at their limit "
                            f"({self._slots_of.size})"
                        )
                    holding = channel
                if channel is not None:
                    channel, problem = await self._deliver(channel, message, deadline, problem)
                pause = wait if channel is not None else ROUTE_POLL
                try:
                    reply = await self._next(queue, min(pause, deadline - loop.time()))
                except TimeoutError:
                    first = False
                    if holding is not None:
                        self._slots_of.give(holding)
                        holding = None
                    self._routes.pop(flow_id, None)
                    if loop.time() >= deadline:
                        raise FlowUnreachable(
                            f"flow {flow_id}: no runner answered {kind} within {timeout:g} s "
                            f"({problem})"
                        ) from None
                    if channel is not None:
                        wait = min(wait * 2, max(wait, MAX_RETRY))
                    continue
                if reply.get("error") == "expired":
                    raise FlowTimeout(
                        f"flow {flow_id}: {kind} reached its runner too late and was not "
                        f"applied (no answer within {timeout:g} s: {problem})"
                    )
                if reply.get("error") == "not_found" and self._routes.pop(flow_id, None):
                    # The flow may have moved (adopted elsewhere): look it up afresh.
                    fresh, _ = await self._locate(flow_id, problem)
                    if fresh is not None and fresh != channel:
                        continue
                break
        finally:
            del self._waiters[request]
            if holding is not None:
                self._slots_of.give(holding)
        self.latency += (loop.time() - sent - self.latency) / 5
        if not reply.get("ok"):
            raise _error(reply)
        return reply

    async def _deliver(
        self, channel: str, message: dict[str, Any], deadline: float, problem: str
    ) -> tuple[str | None, str]:
        """Send ``message`` to ``channel``: → (channel, problem), or (None, why) if not sent.

        A full channel is a busy host, not a lost one: it is tried again soon
        rather than after a whole reply wait, until ``deadline``. While a
        channel is full, this process's senders to it queue up and take turns
        in order, so none is starved by later ones.
        """
        queue = self._full.get(channel)
        if queue is None:
            failure = await self._send_once(channel, message)
            if failure is None:
                return channel, problem
            if isinstance(failure, str):
                return None, failure
            queue = self._full.setdefault(channel, _Turns())
        queue.waiting += 1
        try:
            async with asyncio.timeout_at(deadline), queue.lock:
                delay = FULL_RETRY
                while True:
                    failure = await self._send_once(channel, message)
                    if failure is None:
                        return channel, problem
                    if isinstance(failure, str):
                        return None, failure
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_FULL_RETRY)
        except TimeoutError:
            return None, "its worker's channel stayed full"
        finally:
            queue.waiting -= 1
            if not queue.waiting and self._full.get(channel) is queue:
                del self._full[channel]

    async def _send_once(self, channel: str, message: dict[str, Any]) -> str | _Full | None:
        """One send: None if sent, :data:`FULL` if the channel is full, else why not."""
        try:
            await self.layer.send(channel, message)
        except ChannelFull:
            return FULL
        except Exception as exc:
            return _no_redis(exc)
        return None

    async def _locate(self, flow_id: str, problem: str) -> tuple[str | None, str]:
        """The channel of the flow's host (None for now, with why); FlowNotFound if unknown."""
        cached = self._routes.get(flow_id)
        if cached is not None:
            return cached, problem
        assert self.directory is not None
        try:
            route = await self.directory.route(flow_id)
        except Exception as exc:
            return None, _no_redis(exc)
        if route.owner is None:
            settling = 2 * get_settings().LEASE_SECONDS + 1
            if route.epoch is None or time.time() - route.epoch < settling:
                return None, "no worker has registered it yet (Redis restarted, or no worker)"
            raise FlowNotFound(
                f"no flow with id {flow_id!r} (never started, or finished and no longer retained)"
            )
        if route.channel is None:
            return None, "its worker was lost and no other worker has adopted it yet"
        if len(self._routes) >= MAX_ROUTES:
            self._routes.clear()
        self._routes[flow_id] = route.channel
        return route.channel, problem

    async def flows(self, seconds: float = 0.5) -> list[FlowInfo]:
        """Ask every worker for the flows it hosts; waits at most ``seconds`` for answers."""
        return (await self.survey(seconds)).flows

    async def survey(self, seconds: float) -> Survey:
        """Ask every worker for the flows it hosts.

        Answers are collected until every worker holding a lease has answered,
        or for ``seconds``. Redis out of reach raises :class:`FlowUnreachable`.
        """
        await self._connect()
        assert self.directory is not None
        request = uuid.uuid4().hex
        queue = self._waiters[request] = asyncio.Queue()
        found: list[FlowInfo] = []
        answered: set[str] = set()
        try:
            ask = {"type": "caravela.list", "request": request, "reply": self.channel}
            try:
                expected = set(await self.directory.live_hosts())
                await self.layer.group_send(workers_group(), ask)
            except Exception as exc:
                raise FlowUnreachable(
                    f"cannot ask the workers for their flows: {_no_redis(exc)}"
                ) from None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            while not expected or not expected <= answered:
                try:
                    reply = await self._next(queue, deadline - loop.time())
                except TimeoutError:
                    break
                worker, flows = reply.get("worker"), reply.get("flows")
                if worker in answered:
                    continue
                if not isinstance(flows, list):
                    logger.warning(
                        "caravela_flow client: refused a malformed flows reply: %.200r", reply
                    )
                    continue
                if isinstance(worker, str):
                    answered.add(worker)
                found.extend(_infos(flows))
        finally:
            del self._waiters[request]
        return Survey(found, len(answered), len(expected - answered))


def _infos(flows: list[Any]) -> list[FlowInfo]:
    out = []
    for data in flows:
        try:
            out.append(FlowInfo.from_wire(data))
        except ValueError as exc:
            logger.warning("caravela_flow client: ignored a worker's flow description: %s", exc)
    return out


def _field(reply: dict[str, Any], name: str, kind: type[T]) -> T:
    """``reply[name]`` if it is a ``kind``; else a :class:`FlowError` (a malformed reply)."""
    value = reply.get(name)
    if not isinstance(value, kind):
        logger.warning("caravela_flow client: refused a malformed %s reply: %.200r", name, reply)
        raise FlowError(f"the worker's reply is malformed: {name} is {type(value).__name__}")
    return value


def _record(reply: dict[str, Any], name: str, cls: Callable[..., T], value: Any) -> T:
    """``cls(**value)``; a :class:`FlowError` if the reply's ``value`` does not fit it."""
    try:
        return cls(**value)
    except TypeError:
        logger.warning("caravela_flow client: refused a malformed %s reply: %.200r", name, reply)
        raise FlowError(f"the worker's reply is malformed: {name} does not fit") from None


def _error(reply: dict[str, Any]) -> FlowError:
    message = str(reply.get("message") or reply.get("error") or "the worker refused")
    error = reply.get("error")
    if error == "not_found":
        return FlowNotFound(message)
    if error == "bad_request":
        return FlowArgumentError(message)
    return FlowError(message)


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = weakref.WeakKeyDictionary()


def client() -> Client:
    """The client of the running loop.

    One per event loop: async callers (the ASGI server's loop, a worker's)
    then reach the channel layer with no hop to another thread, whose GIL
    hand-offs would serialise busy callers. Sync callers use the background
    loop's client.
    """
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None:
        found = _clients[loop] = Client()
    return found


def reset_client() -> None:
    """Close every client; the next call makes new ones with the current settings.

    For tests that switch ``CHANNEL_LAYERS`` or ``CARAVELA_FLOW`` (a client
    keeps the layer it was made with). Requests in flight fail.
    """
    old = list(_clients.items())
    _clients.clear()
    for loop, stale in old:
        if loop.is_closed():
            continue
        if running_loop() is loop:
            task = loop.create_task(stale.close())
            stale._tasks.add(task)  # keep a reference until it is done
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(stale.close(), loop).result(CLOSE_SECONDS + 1)


async def _call(work: Callable[[Client], Awaitable[T]]) -> T:
    return await work(client())


def _run(work: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``work(client)`` on the background loop's client, for sync callers."""
    loop = background_loop()
    if running_loop() is loop:
        raise RuntimeError("sync caravela_flow calls cannot run on caravela_flow's own loop")
    return asyncio.run_coroutine_threadsafe(_call(work), loop).result()


def _update_fields(update: Any, args: tuple[Any, ...]) -> dict[str, Any]:
    if isinstance(update, dict):
        return {"update": wire_state(update)}
    return {"fn": function_path(update), "args": wire_state({"args": list(args)})["args"]}


class WorkerBackend:
    """Runs flows in ``runworker`` processes reached over the channel layer."""

    def start(
        self, definition: Any, state: State, notify: Any, key: str | None = None
    ) -> FlowHandle:
        name = definition.key
        return FlowHandle(_run(lambda c: c.start(name, state, notify, key)), name, key)

    async def astart(
        self, definition: Any, state: State, notify: Any, key: str | None = None
    ) -> FlowHandle:
        name = definition.key
        return FlowHandle(await client().start(name, state, notify, key), name, key)

    def signal(self, flow_id: str, update: Any, args: tuple[Any, ...]) -> None:
        fields = _update_fields(update, args)
        _run(lambda c: c.request(flow_id, "signal", fields))

    async def asignal(self, flow_id: str, update: Any, args: tuple[Any, ...]) -> None:
        await client().request(flow_id, "signal", _update_fields(update, args))

    def get_state(self, flow_id: str) -> State:
        reply = _run(lambda c: c.request(flow_id, "get_state", {}))
        return _field(reply, "state", dict)

    async def aget_state(self, flow_id: str) -> State:
        reply = await client().request(flow_id, "get_state", {})
        return _field(reply, "state", dict)

    async def asnapshot(self, flow_id: str) -> Snapshot:
        reply = await client().request(flow_id, "snapshot", {})
        return _record(reply, "snapshot", Snapshot, _field(reply, "snapshot", dict))

    def stop(self, flow_id: str) -> None:
        _run(lambda c: c.request(flow_id, "stop", {}))

    async def astop(self, flow_id: str) -> None:
        await client().request(flow_id, "stop", {})

    def flows(self) -> list[FlowInfo]:
        return _run(lambda c: c.flows())

    async def aflows(self) -> list[FlowInfo]:
        return await client().flows()

    def survey(self, seconds: float) -> Survey:
        return _run(lambda c: c.survey(seconds))

    def inspect(self, flow_id: str) -> dict[str, Any]:
        reply = _run(lambda c: c.request(flow_id, "inspect", {}))
        return dict(reply["details"])


def _no_redis(exc: BaseException) -> str:
    """Why a call failed when Redis could not be reached."""
    return f"cannot reach Redis ({type(exc).__name__}: {exc})"


class _Full:
    """The channel was full: try again soon."""


FULL = _Full()
