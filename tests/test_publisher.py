"""Group delivery under bursts: coalescing keeps the latest state and the final message."""

from __future__ import annotations

import asyncio

from channels.layers import get_channel_layer

from caravela_flow import Flows, astart, flow, set_state, wait_until
from caravela_flow.groups import flow_group


class BurstFlows(Flows):
    # set_state and the failing wait_until run in one tick: both messages are
    # queued before the publisher sends either.
    state_then_error = flow(
        set_state(lambda s: {**s, "attempts": 4}),
        wait_until(lambda s: False, timeout=0),
        initial_state={"attempts": 0},
    )
    states_then_done = flow(
        set_state(lambda s: {**s, "n": 1}),
        set_state(lambda s: {**s, "n": 2}),
        set_state(lambda s: {**s, "n": 3}),
        initial_state={"n": 0},
    )


async def _subscribe_and_start(name: str) -> tuple[object, str]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    handle = await astart(BurstFlows, name)
    # astart returns before the runner's first step, so joining now misses nothing.
    await layer.group_add(flow_group(handle.id), channel)
    return layer, channel


async def _messages_until_final(layer: object, channel: str) -> list[dict]:
    seen: list[dict] = []
    async with asyncio.timeout(5):
        while not seen or seen[-1]["type"] == "flow.state":
            message = await layer.receive(channel)  # type: ignore[attr-defined]
            if not seen or message["version"] > seen[-1]["version"]:
                seen.append(message)
    return seen


async def test_a_state_sent_just_before_an_error_still_reaches_the_group() -> None:
    layer, channel = await _subscribe_and_start("state_then_error")
    seen = await _messages_until_final(layer, channel)
    assert seen[-1]["type"] == "flow.error"
    assert "timed out" in seen[-1]["reason"]
    states = [m["state"] for m in seen if m["type"] == "flow.state"]
    assert states and states[-1] == {"attempts": 4}


async def test_a_burst_may_coalesce_states_but_keeps_the_last_and_the_final() -> None:
    layer, channel = await _subscribe_and_start("states_then_done")
    seen = await _messages_until_final(layer, channel)
    assert seen[-1]["type"] == "flow.done"
    assert seen[-1]["state"] == {"n": 3}
    versions = [m["version"] for m in seen]
    assert versions == sorted(versions)
