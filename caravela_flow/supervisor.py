"""The supervisor: starts runners, restarts crashed ones, retains finished ones.

One :data:`supervisor` per process holds every flow the process hosts, by
id. Its methods that touch a runner must be called on that runner's loop
thread (:mod:`caravela_flow.loops` gets them there); that is what keeps a
flow's state free of locks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .conf import get_settings
from .errors import FlowNotFound
from .notify import deliver
from .runner import Crash, Failure, FlowRunner, Status
from .state import wire_state
from .types import Message, State

if TYPE_CHECKING:
    from .definition import FlowDefinition

logger = logging.getLogger("caravela_flow")


@dataclass(frozen=True)
class FlowInfo:
    """A read-only description of one hosted flow."""

    id: str
    flow: str
    status: str
    version: int
    restarts: int
    #: The key it was started with (``start(..., key=...)``), or None.
    key: str | None = None
    #: The step it is at while running (``"debounce(500)"``, ``"run(sync_book)"`` …), else None.
    step: str | None = None
    #: When its host started (or adopted) it, in seconds since the epoch.
    started_at: float | None = None
    #: Worker mode: the machine and process id of the worker that hosts it.
    host: str | None = None
    pid: int | None = None

    @classmethod
    def from_wire(cls, data: Any) -> FlowInfo:
        """A ``FlowInfo`` from its dict form as a worker sent it; ``ValueError`` if malformed.

        Fields this version does not know are ignored, so a newer worker's answer still reads.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a flow description must be a dict, got {data!r:.80}")
        values = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        for name in ("id", "flow", "status"):
            if not isinstance(values[name], str):
                raise ValueError(f"flow description: {name} must be a string")
        for name in ("version", "restarts"):
            if isinstance(values[name], bool) or not isinstance(values[name], int):
                raise ValueError(f"flow description: {name} must be an int")
        for name in ("key", "step", "host"):
            if values[name] is not None and not isinstance(values[name], str):
                raise ValueError(f"flow description: {name} must be a string or null")
        started, pid = values["started_at"], values["pid"]
        if started is not None and (
            isinstance(started, bool) or not isinstance(started, (int, float))
        ):
            raise ValueError("flow description: started_at must be a number or null")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
            raise ValueError("flow description: pid must be an int or null")
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Snapshot:
    """What a new subscriber is told first: the flow's status, version and state."""

    flow_id: str
    status: str
    version: int
    #: The state in its JSON form.
    state: State
    #: Why the flow failed, when ``status == "failed"``.
    reason: str | None = None


@dataclass(frozen=True)
class Survey:
    """What a look at the deployment's flows found."""

    flows: list[FlowInfo]
    #: Workers that answered (local mode: 0, this process answers).
    answered: int = 0
    #: Worker mode: workers that hold a lease but did not answer in time.
    silent: int = 0


@dataclass(frozen=True)
class Statistics:
    """Counts of the flows this process hosts."""

    running: int
    retained: int


class Supervisor:
    """Hosts the runners of this process."""

    def __init__(self) -> None:
        self._flows: dict[str, FlowRunner] = {}
        #: (definition key, key) → id of the running flow of that key.
        self._keys: dict[tuple[str, str], str] = {}
        self._keys_lock = threading.Lock()

    # -- starting and finding --------------------------------------------

    def launch(
        self,
        definition: FlowDefinition,
        state: State,
        notify: Any = None,
        *,
        flow_id: str | None = None,
        publish: Callable[[FlowRunner, Message, bool], None] = deliver,
        key: str | None = None,
    ) -> FlowRunner:
        """Start a runner on the running loop (call it on that loop's thread).

        With a ``key``, a running flow of the same definition and key is
        returned instead, unchanged.
        """
        loop = asyncio.get_running_loop()
        flow_id = flow_id or uuid.uuid4().hex
        if key is None:
            return self._launch(definition, state, notify, flow_id, publish, loop)
        with self._keys_lock:
            held = self._keys.get((definition.key, key))
            running = self._flows.get(held) if held is not None else None
            if running is not None and not running.status.finished:
                return running
            runner = self._launch(definition, state, notify, flow_id, publish, loop)
            runner.key = key
            self._keys[(definition.key, key)] = flow_id
            return runner

    def _launch(
        self,
        definition: FlowDefinition,
        state: State,
        notify: Any,
        flow_id: str,
        publish: Callable[[FlowRunner, Message, bool], None],
        loop: asyncio.AbstractEventLoop,
    ) -> FlowRunner:
        runner = FlowRunner(flow_id, definition, state, loop, publish, notify)
        # No task name and no done-callback: each costs ~100-300 bytes per idle flow.
        runner.task = loop.create_task(self._supervise(runner))
        self._flows[flow_id] = runner
        return runner

    def get(self, flow_id: str) -> FlowRunner:
        """The runner of ``flow_id``, running or retained; else :class:`FlowNotFound`."""
        runner = self._flows.get(flow_id)
        if runner is None:
            raise FlowNotFound(
                f"no flow with id {flow_id!r} (never started, or no longer retained)"
            )
        return runner

    def __contains__(self, flow_id: object) -> bool:
        return flow_id in self._flows

    def running(self, flow_id: str) -> FlowRunner:
        """The runner of ``flow_id`` if it is still running; else :class:`FlowNotFound`."""
        runner = self.get(flow_id)
        if runner.status.finished:
            raise FlowNotFound(f"flow {flow_id} is not running (it is {runner.status.value})")
        if runner.loop.is_closed():
            self._flows.pop(flow_id, None)
            raise FlowNotFound(f"flow {flow_id} is gone: the event loop it ran on has closed")
        return runner

    def flows(self) -> list[FlowInfo]:
        """A description of every hosted flow (running and retained)."""
        return [_info(r) for r in list(self._flows.values())]

    def details(self, flow_id: str) -> dict[str, Any]:
        """Everything known about one flow, as JSON-ready data (running or retained)."""
        runner = self.get(flow_id)
        definition = runner.definition
        notify = runner.notify
        return {
            **dataclasses.asdict(_info(runner)),
            "reason": runner.reason,
            "restart": definition.restart,
            "max_restarts": definition.max_restarts,
            "max_seconds": definition.max_seconds,
            "notify": notify if notify is None or isinstance(notify, str) else repr(notify),
            "start_state": wire_state(runner.start_state),
            "state": wire_state(runner.state),
        }

    def statistics(self) -> Statistics:
        """How many flows are running and how many finished ones are retained."""
        runners = list(self._flows.values())
        finished = sum(1 for r in runners if r.status.finished)
        return Statistics(running=len(runners) - finished, retained=finished)

    # -- commands (on the runner's loop thread) ----------------------------

    def signal(self, flow_id: str, update: Any, args: tuple[Any, ...] = ()) -> None:
        """Apply or queue a signal."""
        self.running(flow_id).signal(update, args)

    def state(self, flow_id: str) -> State:
        """A copy of the flow's state (its final state once finished)."""
        return self.get(flow_id).snapshot()

    def snapshot(self, flow_id: str) -> Snapshot:
        """The flow's status, version and state, consistent with each other."""
        runner = self.get(flow_id)
        return Snapshot(
            runner.id, runner.status.public, runner.version, wire_state(runner.state), runner.reason
        )

    def stop(self, flow_id: str, reason: str | None = None) -> asyncio.Task[None] | None:
        """Cancel the flow and its in-flight work; returns its task to await.

        With a ``reason`` the flow ends with ``flow.error`` instead of ``flow.stopped``.
        """
        runner = self.running(flow_id)
        runner.abort_reason = reason
        task = runner.task
        if task is not None:
            task.cancel()
            if runner.status is Status.STARTING:
                # Cancelled before its first step, the task never runs _supervise.
                self._end_cancelled(runner)
        return task

    def forget(self, flow_id: str) -> None:
        """Drop a finished flow now instead of at the end of its retention."""
        runner = self._flows.get(flow_id)
        if runner is not None and runner.status.finished:
            del self._flows[flow_id]

    # -- supervision ---------------------------------------------------------

    async def _supervise(self, runner: FlowRunner) -> None:
        try:
            runner.set_status(Status.RUNNING)
            while True:
                crash = runner.take_crash()
                if crash is None:
                    try:
                        await runner.run_body()
                    except Crash as exc:
                        crash = exc
                    except Failure as exc:
                        self._finish(runner, Status.FAILED, exc.reason)
                        return
                    except asyncio.CancelledError:
                        crash = runner.take_crash()
                        task = asyncio.current_task()
                        # A stop that came with the crash's cancellation wins.
                        if crash is None or task is None or task.uncancel() > 0:
                            raise
                    else:
                        self._finish(runner, Status.DONE)
                        return
                if not self._may_restart(runner, crash):
                    return
                runner.reset()
        except asyncio.CancelledError:
            self._end_cancelled(runner)
        except Exception as exc:
            logger.exception("flow %s: internal error in the runner", runner.id)
            self._finish(runner, Status.FAILED, f"internal error: {type(exc).__name__}: {exc}")

    def _may_restart(self, runner: FlowRunner, crash: Crash) -> bool:
        definition = runner.definition
        if definition.restart == "temporary":
            self._finish(runner, Status.FAILED, crash.reason)
            return False
        now = runner.loop.time()
        window = now - definition.max_seconds
        crashes = [t for t in runner.crashes or () if t > window]
        crashes.append(now)
        runner.crashes = crashes
        if len(crashes) > definition.max_restarts:
            self._finish(
                runner,
                Status.FAILED,
                f"restart limit reached ({definition.max_restarts} restarts in "
                f"{definition.max_seconds:g} s); last crash in {crash.step}: {crash.reason}",
            )
            return False
        logger.info(
            "flow %s crashed in %s (%s); restarting from its start state",
            runner.id,
            crash.step,
            crash.reason,
        )
        return True

    def _finish(self, runner: FlowRunner, status: Status, reason: str = "") -> None:
        runner.set_status(status)
        if runner.key is not None:
            with self._keys_lock:
                if self._keys.get((runner.definition.key, runner.key)) == runner.id:
                    del self._keys[(runner.definition.key, runner.key)]
        if status is Status.FAILED:
            runner.reason = reason
            logger.info("flow %s failed: %s", runner.id, reason)
            runner.emit("error", reason=reason)
        else:
            runner.emit(status.value, state=wire_state(runner.state))
        retain = get_settings().RETAIN_SECONDS
        if not runner.loop.is_closed():
            runner.loop.call_later(retain, self.forget, runner.id)

    def _end_cancelled(self, runner: FlowRunner) -> None:
        if runner.abort_reason is None:
            self._finish(runner, Status.STOPPED)
        else:
            self._finish(runner, Status.FAILED, runner.abort_reason)


def _info(r: FlowRunner) -> FlowInfo:
    running = not r.status.finished
    return FlowInfo(
        r.id,
        r.definition.key,
        r.status.public,
        r.version,
        len(r.crashes or ()) + r.adoptions,
        r.key,
        r.step.describe() if running and r.step is not None else None,
        r.started_at,
    )


supervisor = Supervisor()
