"""Type aliases of the public API, for user code and for caravela_flow itself.

They describe what the DSL calls and with which arguments, so a type checker
catches a function of the wrong arity, a misspelt backoff or restart policy,
or a value where a function belongs. The runtime checks the same things
(with :class:`~caravela_flow.errors.FlowDefinitionError` or
:class:`~caravela_flow.errors.FlowArgumentError`) for untyped callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Literal, TypeAlias, TypedDict

from .results import Error, Ok, Retry, Skip

#: A flow's state: a dict with string keys whose values travel as JSON.
State: TypeAlias = dict[str, Any]

#: A Channels-style notification message (``{"type": "flow.state", ...}``).
Message: TypeAlias = dict[str, Any]

#: Milliseconds (int or float), or a timedelta.
Duration: TypeAlias = int | float | timedelta

#: How ``run`` spaces its retries (see :attr:`caravela_flow.steps.BACKOFFS`).
Backoff: TypeAlias = Literal["constant", "linear", "exponential"]

#: What a crash does to a flow: ``"transient"`` restarts it, ``"temporary"`` ends it.
Restart: TypeAlias = Literal["transient", "temporary"]

#: Where notifications go besides the flow's own group: a Channels group
#: name (any mode), or in local mode a callable ``sink(message)`` (sync or
#: async) or an ``asyncio.Queue``.
Sink: TypeAlias = str | Callable[[Message], object] | asyncio.Queue[Message]

#: ``set_state(fn)`` and signal functions: ``fn(state) -> new state``.
StateFn: TypeAlias = Callable[[State], State]

#: ``wait_until(predicate)``: ``predicate(state)``, taken as true or false.
Predicate: TypeAlias = Callable[[State], object]

#: What a ``run`` function returns: ``None`` (continue), ``Ok(state)``,
#: ``Retry(state)`` or ``Error(reason)``.
RunResult: TypeAlias = Ok | Retry | Error | None

#: ``run(fn)``: ``fn(state)``, sync (run in a thread) or async.
RunFn: TypeAlias = Callable[[State], RunResult | Awaitable[RunResult]]

#: What an ``each`` function returns: ``None`` or ``Ok(state)`` (continue),
#: ``Skip(reason)`` (continue, state unchanged) or ``Error(reason)``.
EachResult: TypeAlias = Ok | Skip | Error | None

#: ``each(key, fn)``: ``fn(item, state)``, sync (run in a thread) or async.
EachFn: TypeAlias = Callable[[Any, State], EachResult | Awaitable[EachResult]]

#: A ``parallel``/``race`` task: a zero-argument callable, sync or async,
#: whose result (or ``Ok(result)``) is collected; ``Error(reason)`` or an
#: exception fails it.
Task: TypeAlias = Callable[[], Any]

#: The tasks of a ``parallel``/``race`` step.
Tasks: TypeAlias = list[Task] | tuple[Task, ...]

#: ``parallel(fn)``/``race(fn)``: ``fn(state)`` returns the tasks (``None``: none).
#: It is called on the flow's loop, so it must not block.
TaskBuilder: TypeAlias = Callable[[State], Tasks | None]


class FlowOptions(TypedDict, total=False):
    """The options of ``flow(...)``, all optional."""

    #: ``"transient"`` (default): restart after a crash; ``"temporary"``: never.
    restart: Restart
    #: Crashes tolerated within ``max_seconds`` (default 3).
    max_restarts: int
    #: The restart budget's window, in seconds or a timedelta (default 5).
    max_seconds: float | timedelta
    #: The flow's name in words, for people (``manage.py flows``, dashboards);
    #: by default its attribute's name in words (``sync_book`` → "Sync book").
    verbose_name: str


__all__ = [
    "Backoff",
    "Duration",
    "EachFn",
    "EachResult",
    "FlowOptions",
    "Message",
    "Predicate",
    "Restart",
    "RunFn",
    "RunResult",
    "Sink",
    "State",
    "StateFn",
    "Task",
    "TaskBuilder",
    "Tasks",
]
