"""Messages a flow sends: shapes, versions, when they are sent, and the sinks they reach."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import uuid

import pytest
from channels.layers import get_channel_layer

from caravela_flow import (
    Error,
    FlowNotFound,
    Flows,
    Ok,
    aget_state,
    asignal,
    astart,
    astop,
    each,
    flow,
    run,
    set_state,
    wait,
    wait_until,
)
from caravela_flow.groups import flow_group
from caravela_flow.testing import FlowProbe
from tests.flows_support import FINAL, astart_clocked

pytestmark = pytest.mark.looptime


def done_when_told(state: dict) -> bool:
    return bool(state.get("done"))


class Shapes(Flows):
    done = flow(set_state(lambda s: {**s, "step": 1}), initial_state={"a": 1})
    error = flow(set_state(lambda s: {**s, "step": 1}), run(lambda s: Error("refused")))
    waits = flow(wait_until(done_when_told), initial_state={"a": 1})
    spaced = flow(
        set_state(lambda s: {**s, "step": 1}),
        wait(100),
        set_state(lambda s: {**s, "step": 2}),
        wait(100),
        set_state(lambda s: {**s, "step": 3}),
        wait(100),
    )


async def join(group: str):
    """A fresh channel on the configured layer that is in ``group``."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return layer, channel


async def receive_until_final(layer, channel, timeout: float = 5) -> list[dict]:
    messages: list[dict] = []
    async with asyncio.timeout(timeout):
        while not messages or messages[-1]["type"] not in FINAL:
            messages.append(await layer.receive(channel))
    return messages


# -- shapes and versions ----------------------------------------------------


async def test_state_and_done_messages_have_exactly_the_designed_shape():
    probe = await astart_clocked(Shapes, "done")
    await probe.await_end()
    flow_id = probe.handle.id
    assert probe.messages == [
        {"type": "flow.state", "flow_id": flow_id, "version": 1, "state": {"a": 1, "step": 1}},
        {"type": "flow.done", "flow_id": flow_id, "version": 2, "state": {"a": 1, "step": 1}},
    ]


async def test_error_message_has_exactly_the_designed_shape():
    probe = await astart_clocked(Shapes, "error")
    await probe.await_end()
    assert probe.messages[-1] == {
        "type": "flow.error",
        "flow_id": probe.handle.id,
        "version": 2,
        "reason": "refused",
    }


async def test_stopped_message_has_exactly_the_designed_shape():
    probe = await astart_clocked(Shapes, "waits")
    await asignal(probe.handle, {"b": 2})
    await astop(probe.handle)
    assert probe.messages == [
        {"type": "flow.state", "flow_id": probe.handle.id, "version": 1, "state": {"a": 1, "b": 2}},
        {
            "type": "flow.stopped",
            "flow_id": probe.handle.id,
            "version": 2,
            "state": {"a": 1, "b": 2},
        },
    ]


async def test_version_goes_up_by_one_with_every_message_across_restarts():
    crashed = False

    def crash_once(state: dict) -> dict:
        nonlocal crashed
        if not crashed:
            crashed = True
            raise ValueError("once")
        return {**state, "after": True}

    class F(Flows):
        f = flow(
            set_state(lambda s: {**s, "n": 1}),
            set_state(lambda s: {**s, "n": 2}),
            set_state(crash_once),
            wait_until(done_when_told),
        )

    probe = await astart_clocked(F, "f")
    await probe.await_state({"after": True})
    await asignal(probe.handle, {"done": True})
    await probe.await_end()
    assert probe.kinds == ["flow.state"] * 7 + ["flow.done"]
    assert [m["version"] for m in probe.messages] == list(range(1, 9))


# -- when messages are sent -------------------------------------------------


async def test_nothing_is_sent_at_start():
    queue: asyncio.Queue = asyncio.Queue()
    probe = FlowProbe()
    handle = await astart(Shapes, "waits", {"b": 2}, notify=probe)
    layer, channel = await join(flow_group(handle.id))
    second = await astart(Shapes, "waits", notify=queue)
    await asyncio.sleep(60)
    assert probe.messages == []
    assert queue.empty()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1):
            await layer.receive(channel)
    # The first message is the one the flow's first change causes.
    await asignal(handle, {"c": 3})
    assert probe.messages[0]["version"] == 1
    assert (await layer.receive(channel))["state"] == {"a": 1, "b": 2, "c": 3}
    await astop(handle)
    await astop(second)


async def test_a_state_message_only_when_the_state_changes_by_value():
    class F(Flows):
        f = flow(
            set_state(lambda s: dict(s)),  # an equal copy: no change
            set_state(lambda s: {"a": s["a"], "nested": {"x": [1, 2]}}),  # equal, rebuilt
            wait_until(done_when_told),
        )

    probe = await astart_clocked(F, "f", {"a": 1, "nested": {"x": [1, 2]}})
    await asignal(probe.handle, {"a": 1})
    await asignal(probe.handle, lambda s: {**s, "nested": {"x": [1, 2]}})
    await asyncio.sleep(1)
    assert probe.messages == []
    await asignal(probe.handle, {"a": 2})
    await asignal(probe.handle, {"nested": {"x": [1, 2, 3]}})
    await asignal(probe.handle, {"nested": {"x": [1, 2, 3]}})  # again: no change
    assert [m["state"] for m in probe.messages] == [
        {"a": 2, "nested": {"x": [1, 2]}},
        {"a": 2, "nested": {"x": [1, 2, 3]}},
    ]
    await astop(probe.handle)


@pytest.mark.parametrize(
    ("old", "new"),
    [(1, True), (0, False), (True, 1), ([1], [True])],
    ids=["1 to True", "0 to False", "True to 1", "nested 1 to True"],
)
async def test_values_python_calls_equal_but_json_does_not_are_a_change(old, new):
    probe = await astart_clocked(Shapes, "waits", {"v": old})
    await asignal(probe.handle, {"v": new})
    assert probe.kinds == ["flow.state"]
    assert json.dumps(probe.messages[0]["state"]["v"]) == json.dumps(new)
    assert json.dumps((await aget_state(probe.handle))["v"]) == json.dumps(new)
    await astop(probe.handle)
    assert json.dumps(probe.final["state"]["v"]) == json.dumps(new)


async def test_a_state_message_on_every_restart_even_without_a_change():
    calls = 0

    def crash_twice(state: dict) -> dict:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ValueError("not yet")
        return state

    class F(Flows):
        f = flow(set_state(crash_twice), initial_state={"a": 1})

    probe = await astart_clocked(F, "f")
    await probe.await_end()
    assert probe.kinds == ["flow.state", "flow.state", "flow.done"]
    assert probe.states == [{"a": 1}] * 3


async def test_the_final_message_is_the_last():
    for name, end in (("done", "flow.done"), ("error", "flow.error")):
        probe = await astart_clocked(Shapes, name)
        await probe.await_end()
        await asyncio.sleep(10)
        assert probe.kinds[-1] == end
        assert sum(kind in FINAL for kind in probe.kinds) == 1
    probe = await astart_clocked(Shapes, "waits")
    await astop(probe.handle)
    with pytest.raises(FlowNotFound):
        await asignal(probe.handle, {"after": "the end"})
    await asyncio.sleep(10)
    assert probe.kinds == ["flow.stopped"]


# -- sinks ----------------------------------------------------------------------


async def test_notify_callable_gets_every_message_in_order():
    received: list[dict] = []
    handle = await astart(Shapes, "spaced", notify=received.append)
    await asyncio.sleep(1)
    assert [m["type"] for m in received] == ["flow.state"] * 3 + ["flow.done"]
    assert [m["state"]["step"] for m in received] == [1, 2, 3, 3]
    assert {m["flow_id"] for m in received} == {handle.id}


async def test_notify_async_callable_gets_every_message_in_order():
    received: list[dict] = []
    ended = asyncio.Event()

    async def sink(message: dict) -> None:
        received.append(message)
        if message["type"] in FINAL:
            ended.set()

    await astart(Shapes, "spaced", notify=sink)
    async with asyncio.timeout(5):
        await ended.wait()
    assert [m["type"] for m in received] == ["flow.state"] * 3 + ["flow.done"]
    assert [m["version"] for m in received] == [1, 2, 3, 4]


async def test_notify_callable_that_raises_does_not_harm_the_flow():
    def broken(message: dict) -> None:
        raise RuntimeError("sink is broken")

    handle = await astart(Shapes, "waits", notify=broken)
    await asignal(handle, {"b": 2})
    assert await aget_state(handle) == {"a": 1, "b": 2}
    layer, channel = await join(flow_group(handle.id))
    await asignal(handle, {"done": True})
    messages = await receive_until_final(layer, channel)
    assert messages[-1]["type"] == "flow.done"


async def test_notify_queue_gets_every_message_in_order():
    queue: asyncio.Queue = asyncio.Queue()
    await astart(Shapes, "spaced", notify=queue)
    received: list[dict] = []
    async with asyncio.timeout(5):
        while not received or received[-1]["type"] not in FINAL:
            received.append(await queue.get())
    assert [m["type"] for m in received] == ["flow.state"] * 3 + ["flow.done"]
    assert [m["state"]["step"] for m in received] == [1, 2, 3, 3]


async def test_a_full_notify_queue_still_gets_the_final_message():
    async def count(item: int, state: dict) -> Ok:
        return Ok({**state, "n": item})

    class F(Flows):
        f = flow(each("items", count), initial_state={"items": [1, 2, 3]})

    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    await astart(F, "f", notify=queue)
    await asyncio.sleep(1)  # the flow has ended; the queue holds its first message
    received = [await queue.get()]
    async with asyncio.timeout(5):
        while received[-1]["type"] not in FINAL:
            received.append(await queue.get())
    assert received[0]["state"]["n"] == 1
    assert received[-1]["type"] == "flow.done"
    assert received[-1]["state"]["n"] == 3


async def test_notify_group_gets_every_message():
    layer, channel = await join("book-updates")
    probe = FlowProbe()
    handle = await astart(Shapes, "spaced", notify="book-updates")
    probe.handle = handle
    messages = await receive_until_final(layer, channel)
    assert [m["type"] for m in messages] == ["flow.state"] * 3 + ["flow.done"]
    assert [m["version"] for m in messages] == [1, 2, 3, 4]
    assert {m["flow_id"] for m in messages} == {handle.id}


async def test_the_flows_own_group_gets_the_same_messages_as_the_notify_sink():
    probe = FlowProbe()
    handle = await astart(Shapes, "spaced", notify=probe)
    assert flow_group(handle.id) == f"caravela_flow.{handle.id}"
    layer, channel = await join(f"caravela_flow.{handle.id}")
    messages = await receive_until_final(layer, channel)
    assert messages == probe.messages
    assert len(messages) == 4


async def test_a_notify_group_and_the_flows_group_both_get_the_messages():
    layer, mine = await join("library-feed")
    handle = await astart(Shapes, "spaced", notify="library-feed")
    _, own = await join(flow_group(handle.id))
    from_notify = await receive_until_final(layer, mine)
    from_own = await receive_until_final(layer, own)
    assert from_notify == from_own
    assert [m["version"] for m in from_own] == [1, 2, 3, 4]


async def test_the_group_always_gets_the_final_message_after_a_burst_of_states():
    # States sent in one go may reach the group coalesced (a newer message of
    # the flow supersedes them); versions still only go up and the final
    # message always arrives.
    async def count(item: int, state: dict) -> Ok:
        return Ok({**state, "n": item})  # no await: 50 states in one go

    class F(Flows):
        f = flow(each("items", count), initial_state={"items": list(range(1, 51))})

    probe = FlowProbe()
    handle = await astart(F, "f", notify=probe)
    layer, channel = await join(flow_group(handle.id))
    messages = await receive_until_final(layer, channel)
    assert len(probe.messages) == 51
    assert messages[-1] == probe.messages[-1]
    assert messages[-1]["state"]["n"] == 50
    versions = [m["version"] for m in messages]
    assert versions == sorted(set(versions))


# -- the JSON form of states ------------------------------------------------


async def test_states_travel_in_json_form_while_get_state_keeps_python_values():
    when = datetime.datetime(2024, 5, 17, 9, 30, 15)
    day = datetime.date(2024, 5, 18)
    price = decimal.Decimal("12.50")
    book = uuid.UUID("12345678-1234-5678-1234-567812345678")
    queue: asyncio.Queue = asyncio.Queue()

    class F(Flows):
        f = flow(
            set_state(lambda s: {**s, "due": day, "tags": ("a", "b")}),
            wait_until(done_when_told),
        )

    handle = await astart(F, "f", {"when": when, "price": price, "book": book}, notify=queue)
    layer, channel = await join(flow_group(handle.id))
    message = await queue.get()
    wire = {
        "when": "2024-05-17T09:30:15",
        "price": "12.50",
        "book": "12345678-1234-5678-1234-567812345678",
        "due": "2024-05-18",
        "tags": ["a", "b"],
    }
    assert message["state"] == wire
    assert json.loads(json.dumps(message)) == message
    assert (await layer.receive(channel))["state"] == wire

    state = await aget_state(handle)
    assert state == {
        "when": when,
        "price": price,
        "book": book,
        "due": day,
        "tags": ("a", "b"),
    }
    assert isinstance(state["when"], datetime.datetime)
    assert isinstance(state["price"], decimal.Decimal)
    assert isinstance(state["book"], uuid.UUID)

    await asignal(handle, {"done": True})
    final = (await receive_until_final(layer, channel))[-1]
    assert final["type"] == "flow.done"
    assert final["state"] == {**wire, "done": True}
