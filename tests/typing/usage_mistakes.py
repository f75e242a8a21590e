"""Mistakes in user flow code that mypy --strict must reject, one per line.

``tests/test_typing.py`` type-checks this file and expects an error on every
line marked ``# mistake: ...`` and on no other line. The first fifteen are
the ones a user study tried; the rest cover the same holes from other sides.
Never imported or run.
"""

from __future__ import annotations

import asyncio

from caravela_flow import (
    Flows,
    Ok,
    asignal,
    each,
    flow,
    get_state,
    parallel,
    race,
    run,
    set_state,
    signal,
    start,
    wait,
    wait_until,
)
from caravela_flow.testing import FlowProbe
from caravela_flow.types import State


def push(state: State) -> Ok:
    return Ok(state)


def push_with_extra(state: State, extra: int) -> Ok:
    return Ok(state)


def forget(state: State) -> None:
    return None


def save_row(state: State) -> None:
    return None


def bump(state: State, by: int) -> State:
    return {**state, "n": state["n"] + by}


class BookSync(Flows):
    sync_book = flow(run(push), initial_state={"n": 0})


def mistakes() -> None:
    run(42)  # mistake: 1. run() given a number, not a function
    run(push_with_extra)  # mistake: 2. run() given a function of the wrong arity
    run(push, backoff="exponentail")  # mistake: 3. misspelt backoff
    flow(run(push), restart="sometimes")  # mistake: 4. unknown restart policy
    parallel(123, collect_as="pages")  # mistake: 5. parallel() given a number
    signal("0" * 32, 42)  # mistake: 6. signal update neither a dict nor a function
    start(BookSync, "sync_book", notify=3.14)  # mistake: 7. notify is not a sink
    wait("500")  # mistake: 8. a duration as a string
    set_state(forget)  # mistake: 9. set_state function returns None, not a state
    start(BookSync, 42)  # mistake: 10. flow name not a string
    start("BookSync", "sync_book")  # mistake: 11. a string, not a Flows class
    flow(run(push), initial_state=[("n", 0)])  # mistake: 12. initial_state not a dict
    run(push, retries="3")  # mistake: 13. retries as a string
    get_state(42)  # mistake: 14. a number, not a handle
    start(BookSync, "sync_book", key=5)  # mistake: 15. key not a string
    each("rows", save_row)  # mistake: each() function of the wrong arity (not item, state)
    each("rows")  # mistake: each() without a function
    race([1, 2], collect_as="first")  # mistake: race() tasks that are not callables
    parallel([push], collect_as="pages")  # mistake: a task that takes an argument
    parallel(lambda s: s, collect_as="pages")  # mistake: a builder returning a dict
    wait_until(lambda: True)  # mistake: predicate of the wrong arity
    run(lambda: None)  # mistake: run() lambda of the wrong arity
    flow(run(push), retsart="temporary")  # mistake: misspelt flow option
    flow(run(push), max_restarts="3")  # mistake: max_restarts as a string
    signal("0" * 32, bump)  # mistake: signal function missing its argument
    signal("0" * 32, bump, "2")  # mistake: signal argument of the wrong type
    signal("0" * 32, {"n": 1}, 2)  # mistake: extra arguments with a dict update
    signal("0" * 32, lambda: {})  # mistake: signal lambda of the wrong arity
    start(BookSync, "sync_book", notify=asyncio.Queue[int]())  # mistake: queue of non-messages


def probe_handle_is_a_handle(probe: FlowProbe) -> str:
    return probe.handle.idd  # mistake: typo in a FlowHandle attribute


async def forgotten_await(probe: FlowProbe) -> None:
    asignal(probe.handle, {"n": 1})  # mistake: asignal() never awaited
