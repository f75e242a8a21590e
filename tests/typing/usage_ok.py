"""Correct use of caravela_flow's public API: mypy --strict must find nothing here.

Type-checked by ``tests/test_typing.py``; never collected or run as tests.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Final, assert_type

from django.test import TransactionTestCase

from caravela_flow import (
    Error,
    FlowArgumentError,
    FlowDefinition,
    FlowDefinitionError,
    FlowError,
    FlowHandle,
    FlowNotFound,
    Flows,
    FlowTimeout,
    FlowUnreachable,
    MalformedFlowId,
    NoWorkerAvailable,
    Ok,
    RefusedCallable,
    Retry,
    Skip,
    StateError,
    TokenRefused,
    aget_state,
    asignal,
    astart,
    astop,
    debounce,
    each,
    flow,
    get_state,
    parallel,
    race,
    repeat,
    run,
    sequence,
    set_state,
    signal,
    start,
    stop,
    subscription_url,
    wait,
    wait_until,
)
from caravela_flow.steps import Each, Parallel, Race, Repeat, Run, Sequence, SetState, Wait
from caravela_flow.testing import FlowProbe, astart_probe, start_probe, virtual_time
from caravela_flow.types import Backoff, FlowOptions, Message, Restart, State, Task

# -- step functions, each with the arguments the DSL gives it ---------------------


def is_dirty(state: State) -> bool:
    return bool(state["dirty"])


def begin(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "dirty": "processing"}


def push(state: State) -> Ok | Retry | Error:
    if state.get("fail"):
        return Retry({**state, "attempts": state.get("attempts", 0) + 1})
    return Ok({**state, "dirty": False})


def push_quietly(state: State) -> None:
    return None


async def push_async(state: State) -> Ok | Error:
    await asyncio.sleep(0)
    return Ok(state)


async def fetch(page: int) -> list[int]:
    await asyncio.sleep(0)
    return [page]


def fetch_pages(state: State) -> list[Task]:
    return [lambda: fetch(1), lambda: fetch(2)]


def save_row(item: Any, state: State) -> Ok | Skip | Error | None:
    if item is None:
        return Skip("empty row")
    return Ok({**state, "saved": state.get("saved", 0) + 1})


async def save_row_async(item: object, state: State) -> None:
    await asyncio.sleep(0)


def bump(state: State, by: int) -> State:
    return {**state, "n": state["n"] + by}


def rename(state: State, first: str, last: str = "") -> State:
    return {**state, "name": f"{first} {last}".strip()}


# -- builders -------------------------------------------------------------------

BACKOFF: Final = "linear"
backoff: Backoff = "constant"
restart: Restart = "temporary"
options: FlowOptions = {"max_restarts": 5, "max_seconds": timedelta(seconds=30)}

assert_type(sequence(wait(10), debounce(5)), Sequence)
assert_type(repeat(wait(timedelta(seconds=1))), Repeat)
assert_type(wait(1.5), Wait)
assert_type(set_state(begin), SetState)
assert_type(set_state(lambda s: {**s, "n": 0}), SetState)
assert_type(run(push), Run)
assert_type(run(push_quietly, retries=2, backoff=BACKOFF, base_delay=50), Run)
assert_type(run(push_async, backoff=backoff, max_delay=timedelta(seconds=2), jitter=True), Run)
assert_type(run(lambda s: None, timeout=1_000), Run)
assert_type(parallel(fetch_pages, collect_as="pages", max_concurrency=2), Parallel)
assert_type(parallel([lambda: fetch(1), lambda: 2], collect_as="pages", timeout=100), Parallel)
assert_type(parallel((), collect_as="none"), Parallel)
assert_type(parallel(lambda s: None, collect_as="none"), Parallel)
assert_type(race(fetch_pages, collect_as="first"), Race)
assert_type(race([lambda: fetch(1)], collect_as="first", timeout=timedelta(seconds=1)), Race)
assert_type(each("rows", save_row), Each)
assert_type(each("rows", save_row_async), Each)
assert_type(each("rows", lambda item, state: Skip()), Each)


class BookSync(Flows):
    sync_book = flow(
        repeat(
            wait_until(is_dirty),
            debounce(500, max_wait=5_000),
            sequence(set_state(begin), run(push, retries=3, backoff="exponential")),
        ),
        initial_state={"dirty": False, "book_id": None},
    )
    once = flow(wait_until(is_dirty, timeout=100), restart="temporary", verbose_name="Once")
    budget = flow(wait(1), restart=restart, max_restarts=1, max_seconds=0.5)
    spread = flow(each("rows", save_row), **options)


assert_type(BookSync.sync_book, FlowDefinition)
assert_type(BookSync.sync_book.initial_state, State)

# -- runtime calls ----------------------------------------------------------------


def on_message(message: Message) -> None:
    print(message["type"])


async def on_message_async(message: Message) -> None:
    await asyncio.sleep(0)


def calls() -> None:
    handle = start(BookSync, "sync_book", {"book_id": 1}, key="book:1")
    assert_type(handle, FlowHandle)
    assert_type(handle.key, str | None)
    start(BookSync, "once", notify="my-group")
    start(BookSync, "once", notify=on_message)
    start(BookSync, "once", notify=on_message_async)
    queue: asyncio.Queue[Message] = asyncio.Queue()
    start(BookSync, "once", notify=queue)
    start(BookSync, "once", notify=FlowProbe())
    start(BookSync, "once", None, None, key=None)
    assert_type(signal(handle, {"dirty": True}), None)
    signal(handle.id, begin)
    signal(handle, bump, 2)
    signal(handle, rename, "Ada")
    signal(handle, rename, "Ada", "Lovelace")
    signal(handle, lambda s: {**s, "dirty": True})
    signal(handle, lambda s, n: {**s, "n": n}, 3)
    assert_type(get_state(handle), dict[str, Any])
    assert_type(get_state(str(handle)), State)
    assert_type(subscription_url(handle), str)
    stop(handle)


async def async_calls() -> None:
    handle = await astart(BookSync, "sync_book", key="book:1")
    await asignal(handle, {"dirty": True})
    await asignal(handle, bump, 1)
    assert_type(await aget_state(handle), State)
    await astop(handle.id)


def errors() -> None:
    classes: list[type[FlowError]] = [
        FlowNotFound,
        FlowDefinitionError,
        NoWorkerAvailable,
        FlowArgumentError,
        StateError,
        FlowUnreachable,
        FlowTimeout,
        MalformedFlowId,
        RefusedCallable,
        TokenRefused,
    ]
    try:
        stop("0" * 32)
    except tuple(classes) as exc:
        assert_type(exc, FlowError)


# -- the README's testing example ---------------------------------------------------


class BookSyncTests(TransactionTestCase):
    book_id = 1

    @virtual_time
    async def test_edit_is_debounced(self) -> None:
        probe = await astart_probe(BookSync, "sync_book", {"book_id": self.book_id})
        assert_type(probe.handle, FlowHandle)
        await asignal(probe.handle, {"dirty": True})
        state = await probe.await_state({"dirty": False})
        self.assertFalse(state["dirty"])

    def test_from_sync_code(self) -> None:
        probe = start_probe(BookSync, "sync_book", {"book_id": self.book_id})
        signal(probe.handle, {"dirty": True})
        probe.wait_state(lambda s: s.get("synced_at"), timeout=5)
        assert_type(probe.wait_end(), Message)
