"""The step tree: frozen value objects that a flow's body is made of.

Each struct validates itself when built, so a bad definition fails at import
time with :class:`~caravela_flow.errors.FlowDefinitionError`. What a step
*does* lives in :mod:`caravela_flow.runner`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, get_args

from .errors import FlowDefinitionError
from .types import Backoff, EachFn, Predicate, RunFn, StateFn, Task, TaskBuilder

#: The backoffs ``run`` knows (the values of :data:`caravela_flow.types.Backoff`).
BACKOFFS: tuple[Backoff, ...] = get_args(Backoff)


def describe_fn(fn: Any) -> str:
    """A short, readable name for a user function."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return str(name) if name else repr(fn)


def to_ms(value: Any, step: str, what: str, *, allow_none: bool = False) -> float | None:
    """Validate a duration (ms number or timedelta) and return milliseconds."""
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds() * 1000
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FlowDefinitionError(
            f"{step}: {what} must be milliseconds (int or float) or a timedelta, got {value!r}"
        )
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise FlowDefinitionError(f"{step}: {what} must be a finite number >= 0, got {value!r}")
    return value


def _callable(fn: Any, step: str, what: str = "fn") -> None:
    if not callable(fn):
        raise FlowDefinitionError(f"{step}: {what} must be callable, got {fn!r}")


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


class Step:
    """Base class of every step."""

    __slots__ = ()

    def describe(self) -> str:
        """How error messages name this step."""
        return type(self).__name__.lower()


@dataclass(frozen=True, slots=True)
class Sequence(Step):
    """Run ``steps`` in order."""

    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        steps = self.steps
        if isinstance(steps, list):
            steps = tuple(steps)
        if not isinstance(steps, tuple):
            raise FlowDefinitionError(f"sequence: steps must be a tuple of steps, got {steps!r}")
        for i, step in enumerate(steps):
            if not isinstance(step, Step):
                raise FlowDefinitionError(
                    f"sequence: item {i} is not a step (use the caravela_flow builders), "
                    f"got {step!r}"
                )
        _set(self, "steps", steps)

    def describe(self) -> str:
        return f"sequence({len(self.steps)} steps)"


@dataclass(frozen=True, slots=True)
class Repeat(Step):
    """Loop ``step`` until the flow is stopped, fails or crashes."""

    step: Step

    def __post_init__(self) -> None:
        if not isinstance(self.step, Step):
            raise FlowDefinitionError(f"repeat: body is not a step, got {self.step!r}")

    def describe(self) -> str:
        return "repeat"


@dataclass(frozen=True, slots=True)
class Wait(Step):
    """Pause ``ms`` milliseconds; signals update the state but do not end it."""

    ms: float

    def __post_init__(self) -> None:
        _set(self, "ms", to_ms(self.ms, "wait", "ms"))

    def describe(self) -> str:
        return f"wait({self.ms:g})"


@dataclass(frozen=True, slots=True)
class WaitUntil(Step):
    """Continue once ``predicate(state)`` is true; re-checked after every signal."""

    predicate: Predicate
    timeout: float | None = None

    def __post_init__(self) -> None:
        _callable(self.predicate, "wait_until", "predicate")
        _set(self, "timeout", to_ms(self.timeout, self.describe(), "timeout", allow_none=True))

    def describe(self) -> str:
        return f"wait_until({describe_fn(self.predicate)})"


@dataclass(frozen=True, slots=True)
class Debounce(Step):
    """Continue once ``ms`` have passed with no signal; ``max_wait`` bounds the delay."""

    ms: float
    max_wait: float | None = None

    def __post_init__(self) -> None:
        _set(self, "ms", to_ms(self.ms, "debounce", "ms"))
        _set(self, "max_wait", to_ms(self.max_wait, self.describe(), "max_wait", allow_none=True))

    def describe(self) -> str:
        return f"debounce({self.ms:g})"


@dataclass(frozen=True, slots=True)
class SetState(Step):
    """Replace the state with ``fn(state)``."""

    fn: StateFn

    def __post_init__(self) -> None:
        _callable(self.fn, "set_state")

    def describe(self) -> str:
        return f"set_state({describe_fn(self.fn)})"


@dataclass(frozen=True, slots=True)
class Run(Step):
    """Call ``fn(state)`` (sync in a thread, or async) with retries and backoff."""

    fn: RunFn
    retries: int = 0
    backoff: Backoff = "exponential"
    base_delay: float = 100
    max_delay: float | None = None
    jitter: bool = False
    timeout: float | None = None

    def __post_init__(self) -> None:
        _callable(self.fn, "run")
        name = self.describe()
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise FlowDefinitionError(f"{name}: retries must be an int >= 0, got {self.retries!r}")
        if self.backoff not in BACKOFFS:
            raise FlowDefinitionError(
                f"{name}: unknown backoff {self.backoff!r}; use one of {', '.join(BACKOFFS)}"
            )
        _set(self, "base_delay", to_ms(self.base_delay, name, "base_delay"))
        _set(self, "max_delay", to_ms(self.max_delay, name, "max_delay", allow_none=True))
        _set(self, "timeout", to_ms(self.timeout, name, "timeout", allow_none=True))
        if not isinstance(self.jitter, bool):
            raise FlowDefinitionError(f"{name}: jitter must be True or False, got {self.jitter!r}")

    def describe(self) -> str:
        return f"run({describe_fn(self.fn)})"

    def delay(self, k: int) -> float:
        """Milliseconds to wait before retry ``k`` (1-based), before jitter."""
        base = self.base_delay
        if self.backoff == "constant":
            ms = base
        elif self.backoff == "linear":
            ms = base * k
        else:
            ms = base * 2 ** (k - 1)
        if self.max_delay is not None:
            ms = min(ms, self.max_delay)
        return ms


def _tasks_source(fn: Any, step: str) -> Any:
    if isinstance(fn, (list, tuple)):
        for i, task in enumerate(fn):
            _callable(task, step, f"task {i}")
        return tuple(fn)
    _callable(fn, step, "fn (a function of the state, or a list of tasks)")
    return fn


def _collect_key(key: Any, step: str) -> None:
    if not isinstance(key, str) or not key:
        raise FlowDefinitionError(f"{step}: collect_as must be a non-empty string, got {key!r}")


@dataclass(frozen=True, slots=True)
class Parallel(Step):
    """Run tasks at once; their results go, in order, to ``state[collect_as]``."""

    fn: TaskBuilder | tuple[Task, ...]
    collect_as: str
    max_concurrency: int | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        _set(self, "fn", _tasks_source(self.fn, "parallel"))
        name = self.describe()
        _collect_key(self.collect_as, name)
        limit = self.max_concurrency
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise FlowDefinitionError(
                f"{name}: max_concurrency must be an int >= 1 or None, got {limit!r}"
            )
        _set(self, "timeout", to_ms(self.timeout, name, "timeout", allow_none=True))

    def describe(self) -> str:
        return f"parallel(collect_as={self.collect_as!r})"


@dataclass(frozen=True, slots=True)
class Race(Step):
    """Run tasks at once; the first to succeed wins ``state[collect_as]``."""

    fn: TaskBuilder | tuple[Task, ...]
    collect_as: str
    timeout: float | None = None

    def __post_init__(self) -> None:
        _set(self, "fn", _tasks_source(self.fn, "race"))
        name = self.describe()
        _collect_key(self.collect_as, name)
        _set(self, "timeout", to_ms(self.timeout, name, "timeout", allow_none=True))

    def describe(self) -> str:
        return f"race(collect_as={self.collect_as!r})"


@dataclass(frozen=True, slots=True)
class Each(Step):
    """Call ``fn(item, state)`` for each item of ``state[key]``."""

    key: str
    fn: EachFn

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise FlowDefinitionError(f"each: key must be a non-empty string, got {self.key!r}")
        _callable(self.fn, self.describe())

    def describe(self) -> str:
        return f"each({self.key!r})"


__all__ = [
    "Debounce",
    "Each",
    "Parallel",
    "Race",
    "Repeat",
    "Run",
    "Sequence",
    "SetState",
    "Step",
    "Wait",
    "WaitUntil",
]
