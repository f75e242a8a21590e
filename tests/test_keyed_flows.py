"""Keyed flows in local mode: one running flow per (definition, key) in the process."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from caravela_flow import (
    FlowArgumentError,
    Flows,
    aget_state,
    astart,
    astop,
    flow,
    start,
    stop,
    wait,
)
from caravela_flow.api import backend
from caravela_flow.supervisor import supervisor


class Keyed(Flows):
    long = flow(wait(30), initial_state={"n": 0})
    other = flow(wait(30))
    brief = flow(wait(0), initial_state={"n": 0})


async def test_a_second_start_with_the_same_key_returns_the_running_flow_unchanged() -> None:
    first = await astart(Keyed, "long", {"n": 1}, key="book:1")
    again = await astart(Keyed, "long", {"n": 2}, "ignored-group", key="book:1")
    assert again.id == first.id
    assert again.key == first.key == "book:1"
    assert await aget_state(first) == {"n": 1}  # the second start state was ignored
    await astop(first)


async def test_different_keys_and_different_definitions_never_collide() -> None:
    a = await astart(Keyed, "long", key="k")
    b = await astart(Keyed, "long", key="other-k")
    c = await astart(Keyed, "other", key="k")
    plain = await astart(Keyed, "long")
    assert len({a.id, b.id, c.id, plain.id}) == 4
    assert plain.key is None
    for handle in (a, b, c, plain):
        await astop(handle)


async def test_once_the_keyed_flow_has_finished_the_key_starts_a_new_flow() -> None:
    first = await astart(Keyed, "long", key="again")
    await astop(first)
    second = await astart(Keyed, "long", key="again")
    assert second.id != first.id
    await astop(second)

    done = await astart(Keyed, "brief", key="quick")
    task = supervisor._flows[done.id].task
    assert task is not None
    await asyncio.wait_for(asyncio.shield(task), 10)
    assert (await astart(Keyed, "brief", key="quick")).id != done.id


def test_threads_racing_with_one_key_all_get_the_same_flow() -> None:
    with ThreadPoolExecutor(8) as pool:
        handles = list(pool.map(lambda _: start(Keyed, "long", key="race"), range(32)))
    assert len({h.id for h in handles}) == 1
    keyed = [info for info in backend().flows() if info.key == "race"]
    assert [info.id for info in keyed] == [handles[0].id]
    stop(handles[0])


@pytest.mark.parametrize("key", ["", "x" * 201, 7, b"bytes", ["k"]])
def test_a_key_that_is_not_a_short_string_is_refused(key: Any) -> None:
    with pytest.raises(FlowArgumentError, match="key must be a non-empty string"):
        start(Keyed, "long", key=key)
    assert not [
        info
        for info in backend().flows()
        if info.flow.endswith("Keyed.long") and info.status == "running"
    ]
