"""The runtime calls: ``start``, ``signal``, ``get_state``, ``stop`` and their async twins.

Arguments are checked here, in the caller, so a bad call fails before any
runner exists; then the mode's backend (local or worker) does the work.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVarTuple, overload

from .conf import get_settings
from .definition import Flows
from .errors import FlowArgumentError
from .groups import is_group_name
from .handle import FlowHandle, flow_id_of
from .state import StateError, check_state
from .types import Sink, State

if TYPE_CHECKING:
    from .definition import FlowDefinition
    from .supervisor import FlowInfo, Snapshot, Survey

#: The extra arguments of a signal function ``fn(state, *args)``.
Args = TypeVarTuple("Args")


class Backend(Protocol):
    """What a mode implements (see :mod:`.local` and :mod:`.remote`)."""

    def start(
        self, definition: FlowDefinition, state: State, notify: Any, key: str | None = None
    ) -> FlowHandle: ...
    async def astart(
        self, definition: FlowDefinition, state: State, notify: Any, key: str | None = None
    ) -> FlowHandle: ...
    def signal(self, flow_id: str, update: Any, args: tuple[Any, ...]) -> None: ...
    async def asignal(self, flow_id: str, update: Any, args: tuple[Any, ...]) -> None: ...
    def get_state(self, flow_id: str) -> State: ...
    async def aget_state(self, flow_id: str) -> State: ...
    async def asnapshot(self, flow_id: str) -> Snapshot: ...
    def flows(self) -> list[FlowInfo]: ...
    async def aflows(self) -> list[FlowInfo]: ...
    def survey(self, seconds: float) -> Survey: ...
    def inspect(self, flow_id: str) -> dict[str, Any]: ...
    def stop(self, flow_id: str) -> None: ...
    async def astop(self, flow_id: str) -> None: ...


@functools.cache
def _backend(mode: str) -> Backend:
    if mode == "worker":
        from .remote import WorkerBackend

        return WorkerBackend()
    from .local import LocalBackend

    return LocalBackend()


def backend() -> Backend:
    """The backend of the configured ``CARAVELA_FLOW["MODE"]``."""
    return _backend(get_settings().MODE)


def _worker_mode() -> bool:
    return get_settings().MODE == "worker"


def _check_notify(notify: Any) -> None:
    if notify is None:
        return
    if isinstance(notify, str):
        if not is_group_name(notify):
            raise FlowArgumentError(
                f"notify group {notify!r} is not a valid Channels group name "
                "(ASCII letters, digits, '-', '_', '.', under 100 characters)"
            )
        return
    if _worker_mode():
        raise FlowArgumentError(
            f"notify={notify!r}: in worker mode notify must be a Channels group name; "
            "callables and queues only work in local mode"
        )
    if not (callable(notify) or isinstance(notify, asyncio.Queue)):
        raise FlowArgumentError(
            f"notify must be a group name, a callable or an asyncio.Queue, got {notify!r:.80}"
        )


def _prepare(
    flows_class: Any, name: Any, initial_state: Any, notify: Any
) -> tuple[FlowDefinition, State]:
    if not (isinstance(flows_class, type) and issubclass(flows_class, Flows)):
        raise FlowArgumentError(
            f"start() takes a Flows subclass first, got {flows_class!r:.80}; "
            "declare flows as attributes of `class MyFlows(Flows): ...`"
        )
    definition = flows_class.get_flow(name)
    if initial_state is None:
        initial_state = {}
    if not isinstance(initial_state, dict):
        raise StateError(
            f"initial_state must be a dict or None, got {type(initial_state).__name__}: "
            f"{initial_state!r:.80}"
        )
    state = check_state({**definition.initial_state, **initial_state}, "initial_state")
    _check_notify(notify)
    return definition, state


def _check_update(update: Any, args: tuple[Any, ...]) -> Any:
    if isinstance(update, dict):
        if args:
            raise FlowArgumentError("signal(): extra args only go with a callable update")
        return check_state(update, "signal update")
    if callable(update):
        if _worker_mode():
            from .callables import function_path

            function_path(update)  # refuses what a worker would refuse, with a TypeError
            check_state({"args": list(args)}, "signal")
        return update
    raise FlowArgumentError(
        f"signal() update must be a dict or a callable fn(state, *args), got {update!r:.80}"
    )


#: Longest flow key (``start(..., key=...)``).
MAX_KEY = 200


def _check_key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        raise FlowArgumentError(
            f"key must be a non-empty string of at most {MAX_KEY} characters or None, "
            f"got {type(key).__name__}: {key!r:.80}"
        )
    return key


def start(
    flows_class: type[Flows],
    name: str,
    initial_state: State | None = None,
    notify: Sink | None = None,
    *,
    key: str | None = None,
) -> FlowHandle:
    """Start a supervised runner of ``flows_class.<name>`` and return its handle.

    With a ``key``, while a flow of this definition and key runs anywhere in
    the deployment, its handle is returned and nothing changes.
    """
    definition, state = _prepare(flows_class, name, initial_state, notify)
    return backend().start(definition, state, notify, _check_key(key))


async def astart(
    flows_class: type[Flows],
    name: str,
    initial_state: State | None = None,
    notify: Sink | None = None,
    *,
    key: str | None = None,
) -> FlowHandle:
    """Async twin of :func:`start`."""
    definition, state = _prepare(flows_class, name, initial_state, notify)
    return await backend().astart(definition, state, notify, _check_key(key))


@overload
def signal(handle: FlowHandle | str, update: State) -> None: ...
@overload
def signal(
    handle: FlowHandle | str, update: Callable[[State, *Args], State], *args: *Args
) -> None: ...
def signal(handle: FlowHandle | str, update: object, *args: object) -> None:
    """Merge a dict into the flow's state, or replace it with ``update(state, *args)``.

    Returns once the update is applied, or queued behind an in-flight step.
    """
    flow_id = flow_id_of(handle)
    backend().signal(flow_id, _check_update(update, args), args)


@overload
async def asignal(handle: FlowHandle | str, update: State) -> None: ...
@overload
async def asignal(
    handle: FlowHandle | str, update: Callable[[State, *Args], State], *args: *Args
) -> None: ...
async def asignal(handle: FlowHandle | str, update: object, *args: object) -> None:
    """Async twin of :func:`signal`."""
    flow_id = flow_id_of(handle)
    await backend().asignal(flow_id, _check_update(update, args), args)


def get_state(handle: FlowHandle | str) -> State:
    """A copy of the flow's current state (its final state once finished)."""
    return backend().get_state(flow_id_of(handle))


async def aget_state(handle: FlowHandle | str) -> State:
    """Async twin of :func:`get_state`."""
    return await backend().aget_state(flow_id_of(handle))


def stop(handle: FlowHandle | str) -> None:
    """Cancel the flow and its in-flight work; subscribers get ``flow.stopped``."""
    backend().stop(flow_id_of(handle))


async def astop(handle: FlowHandle | str) -> None:
    """Async twin of :func:`stop`."""
    await backend().astop(flow_id_of(handle))
