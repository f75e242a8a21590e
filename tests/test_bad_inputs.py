"""Every row of docs/bad-inputs.md, run: the input goes in, what the row says comes out.

Each case feeds one bad input and returns what came out (the exception's
class names and message, a close code, a system check's id and message);
the test adds the WARNING-and-above log lines and checks that every
back-quoted fragment of the row's "Gets" column is in it. A second test
checks that the catalogue and the cases name the same rows, so neither can
drift from the other.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import override_settings

from caravela_flow import (
    Flows,
    aget_state,
    asignal,
    astart,
    astop,
    each,
    flow,
    parallel,
    remote_callable,
    run,
    sequence,
    set_state,
    subscription_url,
    wait,
    wait_until,
)
from caravela_flow import remote as remote_module
from caravela_flow.api import backend
from caravela_flow.checks import check_settings
from caravela_flow.conf import get_settings
from caravela_flow.consumers import FlowConsumer
from caravela_flow.host import MAX_OFFERS, WorkerHost
from caravela_flow.supervisor import supervisor
from caravela_flow.tokens import URL_PREFIX, make_token
from caravela_flow.worker import FlowWorker
from demo_site.asgi import application
from tests.flowapp.flows import WorkerFlows, increment
from tests.fuzz_support import captured
from tests.subscriptions import ORIGIN, token_made_ago
from tests.test_fuzz_worker import StubLeases, settle

CATALOGUE = Path(__file__).resolve().parent.parent / "docs" / "bad-inputs.md"
TIMEOUT = 5.0
WORKER = {"MODE": "worker"}
REDIS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:6399/0"]},
    }
}


def noop(state: dict[str, Any]) -> None:
    return None


class Catalogued(Flows):
    idle = flow(wait_until(lambda s: bool(s.get("go"))), initial_state={"go": False})
    quick = flow(set_state(lambda s: {**s, "ran": True}))


def not_in_a_flows_module(state: dict[str, Any]) -> dict[str, Any]:
    return state


@pytest.fixture(autouse=True)
async def _stop_what_the_cases_start() -> AsyncIterator[None]:
    before = {info.id for info in supervisor.flows()}
    yield
    for info in supervisor.flows():
        if info.id not in before:
            if info.status == "running":
                task = supervisor.stop(info.id)
                if task is not None:
                    await asyncio.wait([task], timeout=TIMEOUT)
            supervisor.forget(info.id)


# -- what came out -------------------------------------------------------------------


def described(exc: BaseException) -> str:
    """``"FlowArgumentError FlowError TypeError …: message"``: every class it is, and why."""
    return f"{' '.join(c.__name__ for c in type(exc).__mro__)}: {exc}"


async def raised(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """What ``call(*args, **kwargs)`` raised (awaited if it is a coroutine)."""
    try:
        result = call(*args, **kwargs)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        return described(exc)
    raise AssertionError(f"{call!r} raised nothing")


async def closed(path: str, *headers: tuple[bytes, bytes]) -> str:
    """How the demo's ASGI stack ends a WebSocket to ``path``: ``"close <code>"``."""
    comm = WebsocketCommunicator(application, path, headers=[*headers] or [ORIGIN])
    connected, code = await comm.connect(timeout=TIMEOUT)
    try:
        if not connected:
            return f"denied before accept ({code})"
        while True:
            out = await comm.receive_output(TIMEOUT)
            if out["type"] == "websocket.close":
                return f"close {out['code']}"
    finally:
        await comm.disconnect(timeout=TIMEOUT)


def checked(**overrides: Any) -> str:
    """The caravela_flow system checks' ids and messages under ``overrides``."""
    with override_settings(**overrides):
        return "\n".join(f"{m.id}: {m.msg}" for m in check_settings())


async def running_flow() -> str:
    return (await astart(Catalogued, "idle")).id


# -- the worker host, on an in-memory layer (as in test_fuzz_worker) --------------------


async def host_answer(message: dict[str, Any], open_offers: int = 0) -> str:
    """Hand ``message`` to a worker host; → its answer (if any) as ``key=value`` pairs."""
    layer = InMemoryChannelLayer()
    host = WorkerHost(layer)
    host.channel = await layer.new_channel()
    host.leases = StubLeases()  # type: ignore[assignment]
    timer = asyncio.get_running_loop().call_later(60, lambda: None)
    host.offers = {uuid.uuid4().hex: ({}, timer) for _ in range(open_offers)}
    peer = await layer.new_channel()
    fields = {"request": uuid.uuid4().hex, "reply": peer, **message}
    host.handle({k: v for k, v in fields.items() if v is not ...})
    await settle(host)
    timer.cancel()
    try:
        async with asyncio.timeout(0.05):
            answer = await layer.receive(peer)
    except TimeoutError:
        return "no answer"
    return " ".join(
        f"{k}={v}" for k, v in answer.items() if k in ("type", "ok", "error", "message")
    )


def start_request(**fields: Any) -> dict[str, Any]:
    base = {"type": "caravela.start", "flow": WorkerFlows.hold.key, "flow_id": uuid.uuid4().hex}
    return {**base, "state": {}, **fields}


async def signal_request(**fields: Any) -> str:
    flow_id = (await astart(WorkerFlows, "hold")).id
    try:
        return await host_answer({"type": "caravela.signal", "flow_id": flow_id, **fields})
    finally:
        await astop(flow_id)


async def listener_log(message: dict[str, Any]) -> str:
    """Run a ``runworker`` listener on an in-memory layer and send it ``message``."""
    layer = InMemoryChannelLayer()
    worker = FlowWorker(application=application, channels=["caravela-flows"], channel_layer=layer)
    task = asyncio.create_task(worker.listener("caravela-flows"))
    await layer.send("caravela-flows", message)
    for _ in range(100):
        await asyncio.sleep(0.001)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return "listened"


async def layer_message(message: dict[str, Any], through_layer: bool = False) -> str:
    """Hand a layer message to a subscribed consumer; → the events it sent its socket."""
    consumer = FlowConsumer()
    sent: list[dict[str, Any]] = []

    async def socket(event: dict[str, Any]) -> None:
        sent.append(event)

    consumer.scope, consumer.base_send = {"type": "websocket"}, socket
    consumer.channel_layer = InMemoryChannelLayer()
    consumer.channel_name = await consumer.channel_layer.new_channel()
    consumer.flow_id, consumer.version = "0" * 32, 1
    if through_layer:
        end = {"type": "flow.state", "flow_id": consumer.flow_id, "version": 2, "state": {}}
        await consumer.channel_layer.send(consumer.channel_name, message)
        await consumer.channel_layer.send(consumer.channel_name, end)
        message = await consumer._channel_receive()
    await consumer.dispatch(message)
    return f"sent {[e.get('text', e['type']) for e in sent]}"


async def reply_to_caller(reply: dict[str, Any]) -> str:
    client = remote_module.Client()
    client.layer = InMemoryChannelLayer()
    client.channel = await client.layer.new_channel()
    client._receiver = asyncio.create_task(client._receive())
    try:
        await client.layer.send(client.channel, reply)
        for _ in range(50):
            await asyncio.sleep(0.001)
        return f"receiver alive: {not client._receiver.done()}"
    finally:
        await client.close()


class Canned:
    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply

    async def request(self, *args: Any) -> dict[str, Any]:
        return self.reply


async def malformed_reply(reply: dict[str, Any], call: str) -> str:
    original = remote_module.client
    remote_module.client = lambda: Canned(reply)  # type: ignore[assignment,return-value]
    try:
        return await raised(getattr(remote_module.WorkerBackend(), call), uuid.uuid4().hex)
    finally:
        remote_module.client = original


def in_worker_mode(call: Callable[[], Any]) -> Callable[[], Any]:
    async def case() -> str:
        with override_settings(CARAVELA_FLOW=WORKER, CHANNEL_LAYERS=REDIS):
            return await raised(call)

    return case


async def finished_flow() -> str:
    handle = await astart(Catalogued, "quick")
    for _ in range(200):
        if (await backend().asnapshot(handle.id)).status == "done":
            break
        await asyncio.sleep(0.005)
    return await raised(asignal, handle, {"x": 1})


async def failing_snapshot() -> str:
    real = backend().asnapshot

    async def broken(flow_id: str) -> Any:
        raise RuntimeError("backend unavailable")

    backend().asnapshot = broken  # type: ignore[method-assign]
    try:
        return await closed(subscription_url(await running_flow()))
    finally:
        backend().asnapshot = real  # type: ignore[method-assign]


def forged(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


async def with_flow(make_path: Callable[[str], str]) -> str:
    return await closed(make_path(await running_flow()))


async def foreign_origin() -> str:
    path = subscription_url(await running_flow())
    return await closed(path, (b"origin", b"http://evil.example"))


class Nested:
    def method(self, state: dict[str, Any]) -> dict[str, Any]:
        return state


def bad_setting(**conf: Any) -> Callable[[], Any]:
    async def case() -> str:
        with override_settings(CARAVELA_FLOW=conf):
            return await raised(get_settings)

    return case


# -- the cases, by row id ---------------------------------------------------------


CASES: dict[str, Callable[[], Any]] = {
    # public calls
    "start-not-flows": lambda: raised(astart, dict, "idle"),
    "start-unknown-name": lambda: raised(astart, Catalogued, "nope"),
    "start-state-not-dict": lambda: raised(astart, Catalogued, "idle", [("go", True)]),
    "start-state-object": lambda: raised(astart, Catalogued, "idle", {"x": object()}),
    "start-state-big-int": lambda: raised(astart, Catalogued, "idle", {"n": 10**30}),
    "start-state-nan": lambda: raised(astart, Catalogued, "idle", {"x": math.nan}),
    "start-state-int-key": lambda: raised(astart, Catalogued, "idle", {1: "a"}),
    "start-notify-bad-group": lambda: raised(astart, Catalogued, "idle", notify="has space"),
    "start-notify-wrong-type": lambda: raised(astart, Catalogued, "idle", notify=5),
    "start-notify-callable-worker": in_worker_mode(
        lambda: astart(Catalogued, "idle", notify=print)
    ),
    "start-key-empty": lambda: raised(astart, Catalogued, "idle", key=""),
    "start-key-long": lambda: raised(astart, Catalogued, "idle", key="k" * 201),
    "start-key-not-str": lambda: raised(astart, Catalogued, "idle", key=7),
    "signal-not-dict": lambda: raised(asignal, uuid.uuid4().hex, 5),
    "signal-dict-with-args": lambda: raised(asignal, uuid.uuid4().hex, {"a": 1}, 2),
    "signal-dict-cannot-travel": lambda: raised(asignal, uuid.uuid4().hex, {"a": {1, 2}}),
    "signal-lambda-worker": in_worker_mode(lambda: asignal(uuid.uuid4().hex, lambda s: s)),
    "signal-undeclared-worker": in_worker_mode(
        lambda: asignal(uuid.uuid4().hex, not_in_a_flows_module)
    ),
    "signal-args-cannot-travel-worker": in_worker_mode(
        lambda: asignal(uuid.uuid4().hex, increment, object())
    ),
    "signal-finished": finished_flow,
    "handle-wrong-type": lambda: raised(aget_state, 42),
    "handle-malformed": lambda: raised(aget_state, "../../etc"),
    "handle-empty": lambda: raised(astop, ""),
    "handle-long": lambda: raised(asignal, "a" * 10_000, {"x": 1}),
    "handle-unknown": lambda: raised(aget_state, uuid.uuid4().hex),
    "subscription-url-bad-handle": lambda: raised(subscription_url, "nope"),
    # the flow DSL and flow options
    "dsl-negative-ms": lambda: raised(wait, -1),
    "dsl-ms-not-number": lambda: raised(wait, "5s"),
    "dsl-unknown-backoff": lambda: raised(run, noop, backoff="cubic"),
    "dsl-bad-retries": lambda: raised(run, noop, retries=-1),
    "dsl-not-callable": lambda: raised(set_state, 5),
    "dsl-each-no-key": lambda: raised(each, "", noop),
    "dsl-collect-as-empty": lambda: raised(parallel, noop, collect_as=""),
    "dsl-max-concurrency": lambda: raised(parallel, noop, collect_as="r", max_concurrency=0),
    "dsl-not-a-step": lambda: raised(sequence, wait(1), 5),
    "flow-no-steps": lambda: raised(flow),
    "flow-unknown-option": lambda: raised(flow, wait(1), colour="red"),
    "flow-bad-restart": lambda: raised(flow, wait(1), restart="permanent"),
    "flow-bad-max-restarts": lambda: raised(flow, wait(1), max_restarts=-1),
    "flow-initial-state-not-dict": lambda: raised(flow, wait(1), initial_state=[1]),
    "flow-initial-state-cannot-travel": lambda: raised(
        flow, wait(1), initial_state={"x": object()}
    ),
    "remote-callable-not-function": lambda: raised(remote_callable, print),
    "remote-callable-nested": lambda: raised(remote_callable, Nested.method),
    # the consumer
    "ws-no-token": lambda: closed(URL_PREFIX),
    "ws-garbage-token": lambda: closed(f"{URL_PREFIX}not-a-token/"),
    "ws-forged-token": lambda: with_flow(lambda i: f"{URL_PREFIX}{forged(make_token(i))}/"),
    "ws-expired-token": lambda: with_flow(lambda i: f"{URL_PREFIX}{token_made_ago(i, 3700)}/"),
    "ws-other-user": lambda: with_flow(lambda i: subscription_url(i, User(pk=424242))),
    "ws-extra-segments": lambda: with_flow(lambda i: f"{subscription_url(i)}more/"),
    "ws-unknown-flow": lambda: closed(subscription_url(uuid.uuid4().hex)),
    "ws-no-route": lambda: closed("/not/a/route/"),
    "ws-foreign-origin": foreign_origin,
    "ws-snapshot-fails": failing_snapshot,
    "ws-layer-flow-id-type": lambda: layer_message({"type": "flow.id"}),
    "ws-layer-unknown-type": lambda: layer_message({"type": "chat.message"}),
    "ws-layer-websocket-type": lambda: layer_message({"type": "websocket.send"}, True),
    "ws-layer-bad-state": lambda: layer_message(
        {"type": "flow.state", "flow_id": "0" * 32, "version": 5, "state": b"\x00"}
    ),
    # the worker
    "worker-no-type": lambda: listener_log({"no": "type"}),
    "worker-unknown-type": lambda: host_answer({"type": "caravela.nope"}),
    "worker-bad-request-id": lambda: host_answer(start_request(request=5)),
    "worker-bad-reply": lambda: host_answer(start_request(reply="bad name!")),
    "worker-start-unknown-flow": lambda: host_answer(start_request(flow="os.system")),
    "worker-start-bad-flow-id": lambda: host_answer(start_request(flow_id="../../etc")),
    "worker-start-state-not-dict": lambda: host_answer(start_request(state=3)),
    "worker-start-bad-notify": lambda: host_answer(start_request(notify="bad group!")),
    "worker-start-flood": lambda: host_answer(start_request(), open_offers=MAX_OFFERS),
    "worker-start-expired": lambda: host_answer(start_request(expires=1.0)),
    "worker-signal-gadget": lambda: signal_request(
        fn="demo_site.library.flows:logging.config.dictConfig", args=[]
    ),
    "worker-signal-imported": lambda: signal_request(fn="tests.flowapp.flows:untagged"),
    "worker-signal-module": lambda: signal_request(fn="subprocess:call"),
    "worker-signal-not-path": lambda: signal_request(fn=42),
    "worker-signal-args-not-list": lambda: signal_request(
        fn="tests.flowapp.flows:increment", args="x"
    ),
    "worker-signal-update-not-dict": lambda: signal_request(update="x"),
    "caller-reply-no-request": lambda: reply_to_caller({"type": "caravela.reply", "request": []}),
    "caller-reply-bad-state": lambda: malformed_reply({"ok": True, "state": "x"}, "aget_state"),
    "caller-reply-bad-snapshot": lambda: malformed_reply(
        {"ok": True, "snapshot": {"id": 1}}, "asnapshot"
    ),
    # settings and system checks
    "setting-unknown-key": bad_setting(BOGUS=1),
    "setting-bad-mode": bad_setting(MODE="cloud"),
    "setting-bad-token-max-age": bad_setting(TOKEN_MAX_AGE=0),
    "check-e001": lambda: checked(CARAVELA_FLOW={"MODE": "cloud"}),
    "check-e004": lambda: checked(CARAVELA_FLOW=WORKER, CHANNEL_LAYERS={}),
    "check-e005": lambda: checked(
        CARAVELA_FLOW=WORKER,
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
    ),
    "check-e006": lambda: checked(
        CARAVELA_FLOW=WORKER, CHANNEL_LAYERS=REDIS, ASGI_APPLICATION="no.such.application"
    ),
    "check-e007": lambda: checked(
        CARAVELA_FLOW=WORKER,
        CHANNEL_LAYERS=REDIS,
        ASGI_APPLICATION="demo_site.asgi.django_asgi_app",
    ),
    "check-w004": lambda: checked(
        CARAVELA_FLOW=WORKER,
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": ["redis://10.0.0.5:6379/0"]},
            }
        },
    ),
}


# -- the catalogue -------------------------------------------------------------------

ROW = re.compile(r"^\|\s*`(?P<id>[a-z0-9-]+)`\s*\|(?P<cells>.*)\|\s*$")


def catalogue(column: int = 2) -> dict[str, list[str]]:
    """Row id → the back-quoted fragments of a column (by default "Gets", the fourth)."""
    rows: dict[str, list[str]] = {}
    for line in CATALOGUE.read_text().splitlines():
        found = ROW.match(line)
        if found is None:
            continue
        cells = [cell.strip() for cell in found["cells"].split(" | ")]
        assert len(cells) == 4, f"row {found['id']}: expected 5 columns: {line}"
        assert found["id"] not in rows, f"row {found['id']} appears twice"
        rows[found["id"]] = re.findall(r"`([^`]+)`", cells[column])
    return rows


def test_every_row_of_the_catalogue_has_a_case_and_every_case_a_row() -> None:
    rows = catalogue()
    assert len(rows) >= 40
    assert sorted(set(rows) - set(CASES)) == [], "rows with no case"
    assert sorted(set(CASES) - set(rows)) == [], "cases with no row"
    assert all(rows.values()), [r for r, fragments in rows.items() if not fragments]


def test_the_older_tests_a_row_names_exist() -> None:
    tests = Path(__file__).resolve().parent
    for row, names in catalogue(column=3).items():
        for name in names:
            module, _, test = name.partition("::")
            source = (tests / module).read_text()
            assert all(
                f"def {part}" in source or f"class {part}" in source
                for part in test.split("::")
                if part
            ), (row, name)


@pytest.mark.parametrize("row", sorted(CASES))
async def test_a_bad_input_gets_what_the_catalogue_says(
    row: str, caplog: pytest.LogCaptureFixture
) -> None:
    with captured(caplog):
        outcome = CASES[row]()
        if inspect.isawaitable(outcome):
            outcome = await outcome
    logged = [
        f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO
    ]
    text = "\n".join([str(outcome), *logged])
    for fragment in catalogue()[row]:
        assert fragment in text, f"{row}: {fragment!r} not in:\n{text}"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    # Each refusal is logged once, not once per layer it crosses.
    assert len(warnings) <= 1, logged
