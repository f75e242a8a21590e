"""The runner: interprets a flow's step tree on asyncio, holding its state.

Every rule of what a step does lives here. Lifecycle (restarts, the restart
budget, retention) lives in :mod:`caravela_flow.supervisor`; delivery of
messages in :mod:`caravela_flow.notify`.

A runner is one asyncio task. Its state changes only on its loop's thread,
so ``get_state`` and ``signal`` are plain synchronous calls on that thread:
they never wait for running work. While ``run``/``parallel``/``race``/``each``
is in flight the runner is *busy* and signals queue up, to be applied in
order once the step's result is in.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import fencing
from .calls import call, exc_reason
from .results import Error, Ok, Retry, Skip
from .state import StateError, check_state, copy_state, same_json, wire_state
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
    describe_fn,
)
from .types import Message, State

if TYPE_CHECKING:
    from .definition import FlowDefinition

logger = logging.getLogger("caravela_flow")


class Status(enum.Enum):
    """A runner's lifecycle: starting → running → done | failed | stopped."""

    STARTING = "starting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def finished(self) -> bool:
        return self in _FINAL

    @property
    def public(self) -> str:
        """The status subscribers see (``starting`` shows as ``running``)."""
        return "running" if self is Status.STARTING else self.value


_FINAL = frozenset({Status.DONE, Status.FAILED, Status.STOPPED})
_NEXT = {
    Status.STARTING: frozenset({Status.RUNNING, Status.FAILED, Status.STOPPED}),
    Status.RUNNING: _FINAL,
}


class Crash(Exception):
    """Code outside ``run``/``each`` work failed; the supervisor may restart the flow."""

    def __init__(self, reason: str, step: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.step = step


class Failure(Exception):
    """The flow failed for good (run out of retries, a timeout, an ``each`` error …)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _TaskFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _fire(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


def _expect_state(value: Any, where: str | Step) -> State:
    # ``where`` may be the step itself: its description is built only for an error.
    if isinstance(value, dict):
        try:
            return check_state(value)
        except StateError:
            pass
    name = where.describe() if isinstance(where, Step) else where
    if not isinstance(value, dict):
        raise Crash(f"{name} returned {value!r:.100}, not a dict", name)
    try:
        return check_state(value, f"{name} returned a state whose value")
    except StateError as exc:
        raise Crash(str(exc), name) from None


def _work_state(value: Any, where: str) -> State:
    """What ``run``/``each`` work or tasks handed back as the state.

    A bad one fails the flow at once: it is not a crash, since a restart would
    only run the same work again.
    """
    try:
        return _expect_state(value, where)
    except Crash as bad:
        raise Failure(bad.reason) from None


class FlowRunner:
    """One flow: its definition, current state and message version."""

    __slots__ = (
        "_busy",
        "_crash",
        "_pending",
        "_wake",
        "abort_reason",
        "adoptions",
        "crashes",
        "definition",
        "id",
        "key",
        "loop",
        "notify",
        "publish",
        "reason",
        "start_state",
        "started_at",
        "state",
        "status",
        "step",
        "task",
        "version",
    )

    def __init__(
        self,
        flow_id: str,
        definition: FlowDefinition,
        start_state: State,
        loop: asyncio.AbstractEventLoop,
        publish: Callable[[FlowRunner, Message, bool], None],
        notify: Any = None,
    ) -> None:
        self.id = flow_id
        self.definition = definition
        self.start_state = start_state
        self.state = start_state
        self.loop = loop
        self.publish = publish
        self.notify = notify
        self.version = 0
        self.status = Status.STARTING
        self.task: asyncio.Task[None] | None = None
        self.crashes: list[float] | None = None
        #: Why the flow failed (set when it ends with ``flow.error``).
        self.reason: str | None = None
        #: Set before cancelling to end the flow as failed rather than stopped.
        self.abort_reason: str | None = None
        self._busy = False
        self._pending: list[tuple[Any, tuple[Any, ...]]] | None = None
        self._wake: asyncio.Future[bool] | None = None
        self._crash: Crash | None = None
        #: Worker mode: how many times the flow was adopted from a lost worker.
        self.adoptions = 0
        #: The flow's key (``start(..., key=...)``), or None.
        self.key: str | None = None
        #: When this host started (or adopted) the flow, as ``time.time()``.
        self.started_at = time.time()
        #: The leaf step being run (None before the first one).
        self.step: Step | None = None

    def __repr__(self) -> str:
        return f"<FlowRunner {self.definition.key} {self.id} {self.status.value}>"

    # -- lifecycle -------------------------------------------------------

    def set_status(self, status: Status) -> None:
        """Move to ``status``; an illegal transition is a ``RuntimeError``."""
        if status not in _NEXT.get(self.status, ()):
            raise RuntimeError(
                f"flow {self.id}: cannot go from {self.status.value} to {status.value}"
            )
        self.status = status

    def emit(self, kind: str, **fields: Any) -> Message:
        """Send the next message of this flow (``kind`` is ``"state"``, ``"done"`` …)."""
        self.version += 1
        message: Message = {"type": f"flow.{kind}", "flow_id": self.id, "version": self.version}
        message.update(fields)
        self.publish(self, message, kind != "state")
        return message

    def reset(self) -> None:
        """Go back to the start state after a crash, dropping queued signals."""
        self._busy = False
        self._pending = None
        self._wake = None
        self._crash = None
        self.step = None
        self.state = self.start_state
        self.emit("state", state=wire_state(self.state))

    def take_crash(self) -> Crash | None:
        """The crash a signal caused outside the runner's task, if any (cleared)."""
        crash, self._crash = self._crash, None
        return crash

    # -- state -----------------------------------------------------------

    def snapshot(self) -> State:
        """A copy of the current state; never a half-changed one."""
        return copy_state(self.state)

    def _set_state(self, new: State) -> None:
        # ``new`` is already checked and owned by the runner. It always becomes
        # the state (Python's ``1 == True`` must not keep the old value); a
        # message goes out when its JSON form differs from the old one's.
        old, self.state = self.state, new
        if new != old or not same_json(new, old):
            self.emit("state", state=wire_state(new))

    def signal(self, update: Any, args: tuple[Any, ...] = ()) -> None:
        """Apply ``update`` now, or queue it behind the step in flight.

        A signal function that fails crashes the flow (the caller is not told:
        the crash is the flow's, and its subscribers see it).
        """
        if self.status.finished:
            raise RuntimeError(f"flow {self.id} is {self.status.value}")
        if self._busy:
            if self._pending is None:
                self._pending = []
            self._pending.append((update, args))
            return
        if self._crash is not None:
            return  # crashing: the restart drops this signal anyway
        try:
            self._apply(update, args)
        except Crash as crash:
            self._crash = crash
            if self.status is Status.RUNNING and self.task is not None:
                self.task.cancel()

    def _apply(self, update: Any, args: tuple[Any, ...]) -> None:
        if isinstance(update, dict):
            # Both halves are already checked (callers check updates): merge only.
            self._set_state({**self.state, **update})
        else:
            where = f"signal {describe_fn(update)}"
            try:
                new = update(copy_state(self.state), *args)
            except Exception as exc:
                logger.warning("flow %s: %s raised", self.id, where, exc_info=True)
                raise Crash(exc_reason(exc), where) from exc
            self._set_state(_expect_state(new, where))
        wake = self._wake
        if wake is not None:
            _fire(wake, True)

    def _drain(self) -> None:
        pending = self._pending
        self._pending = None
        while pending:
            update, args = pending.pop(0)
            self._apply(update, args)

    # -- the interpreter -------------------------------------------------

    async def run_body(self) -> None:
        """Interpret the flow's body once, from the current state.

        Sequences and repeats are walked with an explicit stack, so an idle
        flow costs one coroutine frame plus the leaf step's.
        """
        stack: list[Any] = [self.definition.body, 0]
        leaf = _LEAVES
        while stack:
            step = stack[-2]
            kind = type(step)
            if kind is Sequence:
                index = stack[-1]
                if index < len(step.steps):
                    stack[-1] = index + 1
                    stack += (step.steps[index], 0)
                else:
                    del stack[-2:]
            elif kind is Repeat:
                if stack[-1]:
                    await asyncio.sleep(0)  # a loop with no waits must not hog the loop
                stack[-1] = 1
                stack += (step.step, 0)
            else:
                del stack[-2:]
                gate = fencing.gate
                if gate is not None and gate.held():
                    await gate.wait()  # worker mode: this host may have lost its lease
                self.step = step
                await leaf[kind](self, step)

    async def _sleep_or_wake(self, seconds: float | None) -> bool:
        """Sleep ``seconds`` (forever if None); True if a signal woke us first."""
        future: asyncio.Future[bool] = self.loop.create_future()
        self._wake = future
        timer = None if seconds is None else self.loop.call_later(seconds, _fire, future, False)
        try:
            return await future
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _wait(self, step: Wait) -> None:
        await asyncio.sleep(step.ms / 1000)

    async def _wait_until(self, step: WaitUntil) -> None:
        deadline = None if step.timeout is None else self.loop.time() + step.timeout / 1000
        while not self._check(step):
            if deadline is None:
                # Inlined _sleep_or_wake(None): an idle flow then holds one frame less.
                self._wake = self.loop.create_future()
                try:
                    await self._wake
                finally:
                    self._wake = None
                continue
            remaining = deadline - self.loop.time()
            if remaining <= 0 or not await self._sleep_or_wake(remaining):
                if self._check(step):
                    return
                raise Failure(f"{step.describe()} timed out after {step.timeout:g} ms")

    def _check(self, step: WaitUntil) -> bool:
        try:
            return bool(step.predicate(self.state))
        except Exception as exc:
            logger.warning("flow %s: %s raised", self.id, step.describe(), exc_info=True)
            raise Crash(exc_reason(exc), step.describe()) from exc

    async def _debounce(self, step: Debounce) -> None:
        now = self.loop.time()
        quiet_until = now + step.ms / 1000
        hard = None if step.max_wait is None else now + step.max_wait / 1000
        while True:
            until = quiet_until if hard is None else min(quiet_until, hard)
            remaining = until - self.loop.time()
            if remaining <= 0:
                return
            if await self._sleep_or_wake(remaining):
                quiet_until = self.loop.time() + step.ms / 1000

    async def _set_state_step(self, step: SetState) -> None:
        try:
            new = step.fn(copy_state(self.state))
        except Exception as exc:
            where = step.describe()
            logger.warning("flow %s: %s raised", self.id, where, exc_info=True)
            raise Crash(exc_reason(exc), where) from exc
        self._set_state(_expect_state(new, step))

    async def _busy_step(self, step: Step, work: Callable[[Any], Any]) -> None:
        # Signals queue while the step runs and land, in order, after its result.
        self._busy = True
        try:
            await work(step)
        finally:
            self._busy = False
        self._drain()

    async def _run_step(self, step: Run) -> None:
        await self._busy_step(step, self._run)

    async def _run(self, step: Run) -> None:
        name = step.describe()
        reason = ""
        for attempt in range(step.retries + 1):
            if attempt:
                delay = step.delay(attempt)
                if step.jitter:
                    delay = random.uniform(delay / 2, delay)
                await asyncio.sleep(delay / 1000)
            deadline = asyncio.timeout(None if step.timeout is None else step.timeout / 1000)
            try:
                async with deadline:
                    result = await call(step.fn, copy_state(self.state))
            except TimeoutError as exc:
                # The step's own timeout, or a TimeoutError that fn raised itself.
                if deadline.expired():
                    reason = f"{name} timed out after {step.timeout:g} ms"
                else:
                    logger.info("flow %s: %s raised %s", self.id, name, exc_reason(exc))
                    reason = exc_reason(exc)
                continue
            except Exception as exc:
                logger.info("flow %s: %s raised %s", self.id, name, exc_reason(exc))
                reason = exc_reason(exc)
                continue
            if result is None:
                return
            if isinstance(result, Ok):
                self._set_state(_work_state(result.state, f"{name} Ok(...)"))
                return
            if isinstance(result, Retry):
                self._set_state(_work_state(result.state, f"{name} Retry(...)"))
                reason = "retries exhausted"
                continue
            if isinstance(result, Error):
                reason = str(result.reason)
                continue
            raise Failure(
                f"{name} returned an unexpected value {result!r:.100}; "
                "expected None, Ok(state), Retry(state) or Error(reason)"
            )
        raise Failure(reason)

    def _tasks(self, step: Parallel | Race) -> list[Callable[[], Any]]:
        if isinstance(step.fn, tuple):
            return list(step.fn)
        where = f"{step.describe()} builder {describe_fn(step.fn)}"
        try:
            tasks = step.fn(copy_state(self.state))
        except Exception as exc:
            logger.warning("flow %s: %s raised", self.id, where, exc_info=True)
            raise Crash(exc_reason(exc), where) from exc
        if tasks is None:
            tasks = []
        if not isinstance(tasks, (list, tuple)) or not all(callable(t) for t in tasks):
            raise Crash(f"{where} returned {tasks!r:.100}, not a list of callables", where)
        return list(tasks)

    async def _task(self, fn: Callable[[], Any], limit: asyncio.Semaphore | None) -> Any:
        try:
            if limit is None:
                result = await call(fn)
            else:
                async with limit:
                    result = await call(fn)
        except Exception as exc:
            raise _TaskFailed(exc_reason(exc)) from exc
        if isinstance(result, Error):
            raise _TaskFailed(str(result.reason))
        return result.state if isinstance(result, Ok) else result

    async def _parallel_step(self, step: Parallel) -> None:
        await self._busy_step(step, self._parallel)

    async def _parallel(self, step: Parallel) -> None:
        tasks = self._tasks(step)
        results: list[Any] = []
        if tasks:
            limit = None
            if step.max_concurrency is not None and step.max_concurrency < len(tasks):
                limit = asyncio.Semaphore(step.max_concurrency)
            seconds = None if step.timeout is None else step.timeout / 1000
            try:
                async with asyncio.timeout(seconds), asyncio.TaskGroup() as group:
                    children = [group.create_task(self._task(fn, limit)) for fn in tasks]
            except TimeoutError:
                raise Failure(f"{step.describe()} timed out after {step.timeout:g} ms") from None
            except ExceptionGroup as failed:
                raise Failure(_first_reason(failed)) from None
            results = [child.result() for child in children]
        where = step.describe()
        self._set_state(_work_state({**self.state, step.collect_as: results}, where))

    async def _race_step(self, step: Race) -> None:
        await self._busy_step(step, self._race)

    async def _race(self, step: Race) -> None:
        tasks = self._tasks(step)
        name = step.describe()
        if not tasks:
            raise Failure(f"{name} has no tasks to race")
        seconds = None if step.timeout is None else step.timeout / 1000
        children = {self.loop.create_task(self._task(fn, None)) for fn in tasks}
        reason = ""
        try:
            async with asyncio.timeout(seconds):
                pending = set(children)
                while pending:
                    done, pending = await asyncio.wait(pending, return_when="FIRST_COMPLETED")
                    for child in done:
                        error = child.exception()
                        if error is None:
                            result = child.result()
                            state = {**self.state, step.collect_as: result}
                            self._set_state(_work_state(state, name))
                            return
                        reason = getattr(error, "reason", exc_reason(error))
        except TimeoutError:
            raise Failure(f"{name} timed out after {step.timeout:g} ms") from None
        finally:
            for child in children:
                child.cancel()
            await asyncio.gather(*children, return_exceptions=True)
        raise Failure(f"{name}: all {len(tasks)} tasks failed; last: {reason}")

    async def _each_step(self, step: Each) -> None:
        await self._busy_step(step, self._each)

    async def _each(self, step: Each) -> None:
        name = step.describe()
        if step.key not in self.state:
            raise Failure(f"{name}: the state has no key {step.key!r}")
        items = copy_state(self.state)[step.key]
        if not isinstance(items, (list, tuple)):
            raise Failure(f"{name}: state[{step.key!r}] is {items!r:.100}, not a list")
        for item in items:
            try:
                result = await call(step.fn, item, copy_state(self.state))
            except Exception as exc:
                logger.info("flow %s: %s raised %s", self.id, name, exc_reason(exc))
                raise Failure(exc_reason(exc)) from exc
            if result is None or isinstance(result, Skip):
                continue
            if isinstance(result, Ok):
                self._set_state(_work_state(result.state, f"{name} Ok(...)"))
            elif isinstance(result, Error):
                raise Failure(str(result.reason))
            else:
                raise Failure(
                    f"{name} returned an unexpected value {result!r:.100}; "
                    "expected None, Ok(state), Skip(reason) or Error(reason)"
                )


def _first_reason(group: BaseExceptionGroup[Exception]) -> str:
    first = group.exceptions[0]
    if isinstance(first, BaseExceptionGroup):
        return _first_reason(first)
    return getattr(first, "reason", None) or exc_reason(first)


_LEAVES: dict[type[Step], Callable[[FlowRunner, Any], Any]] = {
    Wait: FlowRunner._wait,
    WaitUntil: FlowRunner._wait_until,
    Debounce: FlowRunner._debounce,
    SetState: FlowRunner._set_state_step,
    Run: FlowRunner._run_step,
    Parallel: FlowRunner._parallel_step,
    Race: FlowRunner._race_step,
    Each: FlowRunner._each_step,
}
