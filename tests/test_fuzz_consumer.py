"""Fuzzing ``FlowConsumer``: layer messages, browser frames, tokens and paths.

Layer messages are handed to the consumer's handlers directly (and through
its layer receive, on an in-memory layer); tokens, paths and frames go
through the demo's real ASGI stack with ``WebsocketCommunicator``. Each
example checks that nothing crashed (no ERROR record, the consumer still
forwards a valid message afterwards), and that each refusal was logged at
most once, at WARNING.
"""

from __future__ import annotations

import json
import logging
import string
import uuid
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from channels.testing import WebsocketCommunicator
from django.core import signing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caravela_flow import asignal, subscription_url
from caravela_flow.consumers import FlowConsumer
from caravela_flow.testing import astart_probe
from caravela_flow.tokens import SALT, URL_PREFIX, TokenRefused, read_token
from demo_site.asgi import application
from tests.fuzz_support import captured, ids, junk, message, records
from tests.subscriptions import ORIGIN
from tests.test_consumer import SocketFlows

FUZZ = settings(
    max_examples=60,
    deadline=None,
    # The same examples every run: a failure is reproducible, never a one-off.
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Examples that each open a socket through the whole ASGI stack.
SOCKETS = settings(FUZZ, max_examples=25)
TIMEOUT = 5.0

FLOW_TYPES = ["flow.state", "flow.done", "flow.error", "flow.stopped"]
ODD_TYPES = ["flow.id", "flow.__init__", "flow.", "flow_state", "caravela.reply", "http.request"]


class Socket:
    """What a consumer sends to its socket, recorded."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, event: dict[str, Any]) -> None:
        self.sent.append(event)

    def frames(self) -> list[dict[str, Any]]:
        return [json.loads(e["text"]) for e in self.sent if e["type"] == "websocket.send"]

    def closes(self) -> list[int]:
        return [e["code"] for e in self.sent if e["type"] == "websocket.close"]


async def subscriber(flow_id: str, version: int = 3) -> tuple[FlowConsumer, Socket]:
    """A consumer past its snapshot (at ``version``), on an in-memory layer."""
    consumer = FlowConsumer()
    socket = Socket()
    consumer.scope = {"type": "websocket", "path": "/ws/flows/x/"}
    consumer.base_send = socket
    consumer.channel_layer = InMemoryChannelLayer(capacity=1000)
    consumer.channel_name = await consumer.channel_layer.new_channel()
    consumer.flow_id, consumer.version = flow_id, version
    return consumer, socket


def layer_messages(flow_id: str) -> st.SearchStrategy[Any]:
    versions = st.integers(min_value=-5, max_value=10) | junk
    fields = {
        "flow_id": st.just(flow_id) | ids,
        "version": versions,
        "state": st.dictionaries(st.text(max_size=5), junk, max_size=3) | junk,
        "reason": st.text(max_size=20) | junk,
    }
    return message(FLOW_TYPES + ODD_TYPES, **fields) | junk


@FUZZ
@given(data=st.data())
async def test_layer_messages_of_any_shape_never_crash_the_consumer(
    caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    flow_id = uuid.uuid4().hex
    consumer, socket = await subscriber(flow_id)
    batch = data.draw(st.lists(layer_messages(flow_id), min_size=1, max_size=8))
    caplog.clear()
    with captured(caplog):
        for junk_message in batch:
            mark = len(caplog.records)
            await consumer.dispatch(junk_message)
            assert len(caplog.records[mark:]) <= 1, [r.getMessage() for r in caplog.records]
        assert not records(caplog, logging.ERROR), [r.getMessage() for r in caplog.records]
        assert all(r.levelno == logging.WARNING for r in caplog.records)

        if consumer.closing:  # a final message (well formed, if forged) ended it normally
            assert socket.closes() == [1000]
            return
        assert socket.closes() == []
        version = (consumer.version or 0) + 1
        state = {"type": "flow.state", "flow_id": flow_id, "version": version, "state": {"n": 1}}
        await consumer.dispatch(state)
    assert socket.frames()[-1] == {
        "event": "state",
        "flow_id": flow_id,
        "version": version,
        "state": {"n": 1},
    }
    # Every frame sent is one the browser can use.
    for frame in socket.frames():
        assert frame["flow_id"] == flow_id and isinstance(frame["version"], int)
        if frame["event"] == "error":
            assert isinstance(frame["reason"], str)
        else:
            assert isinstance(frame["state"], dict)


@FUZZ
@given(data=st.data())
async def test_only_flow_messages_come_through_the_layer(
    caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    flow_id = uuid.uuid4().hex
    consumer, _ = await subscriber(flow_id)
    kinds = st.sampled_from([*FLOW_TYPES, *ODD_TYPES, "websocket.send", "websocket.disconnect"])
    dicts = st.fixed_dictionaries(
        {"type": kinds | junk}, optional={"flow_id": ids}
    ) | st.dictionaries(
        st.text(max_size=6).filter(lambda k: k != "__asgi_channel__"), junk, max_size=3
    )
    batch = data.draw(st.lists(dicts, max_size=8))
    last = {"type": "flow.state", "flow_id": flow_id, "version": 99, "state": {}, "end": True}
    for junk_message in [*batch, last]:
        await consumer.channel_layer.send(consumer.channel_name, junk_message)
    caplog.clear()
    with captured(caplog):
        received = []
        while not received or not received[-1].get("end"):
            received.append(await consumer._channel_receive())
    assert all(m["type"] in FLOW_TYPES for m in received)
    dropped = len(batch) + 1 - len(received)
    assert len(records(caplog, logging.WARNING)) == dropped
    assert len(caplog.records) == dropped


# -- tokens and paths ----------------------------------------------------------------


@FUZZ
@given(
    token=st.text(max_size=300)
    | st.text(alphabet=string.ascii_letters + string.digits + ":-_", max_size=300)
)
def test_any_string_is_refused_as_a_token_with_token_refused(token: str) -> None:
    with pytest.raises(TokenRefused):
        read_token(token)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@FUZZ
@given(
    payload=json_values
    | st.fixed_dictionaries(
        {}, optional={"f": st.builds(lambda: uuid.uuid4().hex) | json_values, "u": json_values}
    )
)
def test_a_validly_signed_token_with_any_payload_names_a_flow_or_is_refused(payload: Any) -> None:
    token = signing.dumps(payload, salt=SALT)
    try:
        flow_id = read_token(token)
    except TokenRefused:
        return
    assert payload == {"f": flow_id, "u": ""}


path_chars = string.ascii_letters + string.digits + "-_.:~%/!$&'()*+,;=@"


async def refusal(caplog: pytest.LogCaptureFixture, path: str) -> tuple[int, str]:
    """Connect to ``path``: the socket's close code and the one WARNING it logged (no ERROR)."""
    comm = WebsocketCommunicator(application, path, headers=[ORIGIN])
    caplog.clear()
    with captured(caplog):
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert connected
        closed = await comm.receive_output(TIMEOUT)
        await comm.disconnect(timeout=TIMEOUT)
    assert closed["type"] == "websocket.close"
    [warning] = records(caplog, logging.WARNING)
    assert not records(caplog, logging.ERROR)
    return closed["code"], warning.getMessage()


@SOCKETS
@given(tail=st.text(alphabet=path_chars, max_size=120))
async def test_any_path_under_the_prefix_is_refused_with_4403_and_one_warning(
    caplog: pytest.LogCaptureFixture, tail: str
) -> None:
    code, warning = await refusal(caplog, f"{URL_PREFIX}{tail}")
    assert code == 4403
    assert "refused a flow subscription" in warning


@SOCKETS
@given(path=st.text(alphabet=path_chars, min_size=1, max_size=80).map(lambda p: "/" + p))
async def test_any_other_path_is_refused_with_4404_and_one_warning(
    caplog: pytest.LogCaptureFixture, path: str
) -> None:
    if path.startswith(URL_PREFIX):
        return
    code, warning = await refusal(caplog, path)
    assert code == 4404
    assert "no route matches" in warning


frames = st.lists(
    st.text(min_size=1, max_size=200).map(lambda t: {"text_data": t})
    | st.binary(min_size=1, max_size=200).map(lambda b: {"bytes_data": b}),
    max_size=6,
)


@SOCKETS
@given(sent=frames)
async def test_frames_from_the_browser_of_any_content_are_ignored(
    caplog: pytest.LogCaptureFixture, sent: list[dict[str, Any]]
) -> None:
    probe = await astart_probe(SocketFlows, "gated")
    assert probe.handle is not None
    comm = WebsocketCommunicator(application, subscription_url(probe.handle), headers=[ORIGIN])
    caplog.clear()
    with captured(caplog):
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert connected
        snapshot = await comm.receive_json_from(TIMEOUT)
        for frame in sent:
            await comm.send_to(**frame)
        await asignal(probe.handle, {"n": 7})
        changed = await comm.receive_json_from(TIMEOUT)
        await comm.disconnect(timeout=TIMEOUT)
    assert snapshot["event"] == "snapshot"
    assert (changed["event"], changed["state"]["n"]) == ("state", 7)
    assert not records(caplog, logging.WARNING) and not records(caplog, logging.ERROR)
