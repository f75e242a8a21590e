"""The builders of the flow DSL; each returns a frozen step from :mod:`.steps`.

Their signatures say what each function receives (see :mod:`.types`); the
steps check the same at runtime, for untyped callers.
"""

from __future__ import annotations

from .steps import (
    Debounce,
    Each,
    Parallel,
    Race,
    Repeat,
    Run,
    Sequence,
    SetState,
    Step,
    Wait,
    WaitUntil,
)
from .types import Backoff, Duration, EachFn, Predicate, RunFn, StateFn, TaskBuilder, Tasks


def sequence(*steps: Step) -> Sequence:
    """Run ``steps`` in order."""
    return Sequence(steps)


def repeat(*steps: Step) -> Repeat:
    """Loop ``steps`` until the flow is stopped, fails or crashes."""
    return Repeat(Sequence(steps))


def wait(ms: Duration) -> Wait:
    """Pause for ``ms`` milliseconds."""
    return Wait(ms)  # type: ignore[arg-type]


def wait_until(predicate: Predicate, timeout: Duration | None = None) -> WaitUntil:
    """Continue once ``predicate(state)`` holds; fail after ``timeout`` ms if given."""
    return WaitUntil(predicate, timeout)  # type: ignore[arg-type]


def debounce(ms: Duration, max_wait: Duration | None = None) -> Debounce:
    """Continue once ``ms`` pass with no signal; ``max_wait`` caps the total delay."""
    return Debounce(ms, max_wait)  # type: ignore[arg-type]


def set_state(fn: StateFn) -> SetState:
    """Replace the state with ``fn(state)``."""
    return SetState(fn)


def run(
    fn: RunFn,
    retries: int = 0,
    backoff: Backoff = "exponential",
    base_delay: Duration = 100,
    max_delay: Duration | None = None,
    jitter: bool = False,
    timeout: Duration | None = None,
) -> Run:
    """Call ``fn(state)`` with ``retries`` retries spaced by ``backoff``.

    ``fn`` is sync (run in a thread) or async and returns ``None``,
    ``Ok(state)``, ``Retry(state)`` or ``Error(reason)``.
    """
    return Run(fn, retries, backoff, base_delay, max_delay, jitter, timeout)  # type: ignore[arg-type]


def parallel(
    fn_or_list: TaskBuilder | Tasks,
    collect_as: str,
    max_concurrency: int | None = None,
    timeout: Duration | None = None,
) -> Parallel:
    """Run tasks at once and collect their results, in order, at ``state[collect_as]``.

    ``fn_or_list`` is a list of zero-argument tasks, or ``fn(state)`` that returns one.
    """
    return Parallel(fn_or_list, collect_as, max_concurrency, timeout)  # type: ignore[arg-type]


def race(fn_or_list: TaskBuilder | Tasks, collect_as: str, timeout: Duration | None = None) -> Race:
    """Run tasks at once; the first to succeed puts its result at ``state[collect_as]``.

    ``fn_or_list`` is a list of zero-argument tasks, or ``fn(state)`` that returns one.
    """
    return Race(fn_or_list, collect_as, timeout)  # type: ignore[arg-type]


def each(key: str, fn: EachFn) -> Each:
    """Call ``fn(item, state)`` for every item of ``state[key]``.

    ``fn`` is sync (run in a thread) or async and returns ``None``,
    ``Ok(state)``, ``Skip(reason)`` or ``Error(reason)``.
    """
    return Each(key, fn)
