"""Local mode: runners live in this process, on the loop of whoever starts them.

An async caller's flows run on its own loop; a sync view under an ASGI
server lands on the server's loop (as asgiref's ``async_to_sync`` would);
any other thread uses a background loop owned by caravela_flow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import TYPE_CHECKING, Any

from .conf import get_settings
from .errors import FlowNotFound, FlowTimeout
from .handle import FlowHandle
from .loops import acall_on, call_on, home_loop, running_loop
from .supervisor import FlowInfo, Snapshot, Survey, supervisor
from .types import State

if TYPE_CHECKING:
    from .definition import FlowDefinition
    from .runner import FlowRunner


def _loop_of(flow_id: str) -> asyncio.AbstractEventLoop:
    loop = supervisor.running(flow_id).loop
    if loop is not running_loop() and not loop.is_running():
        raise FlowNotFound(f"flow {flow_id} is gone: the event loop it ran on has stopped")
    return loop


def _result(future: concurrent.futures.Future[Any], flow_id: str) -> Any:
    timeout = get_settings().REQUEST_TIMEOUT
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        raise FlowTimeout(
            f"flow {flow_id}: its event loop did not answer in {timeout:g} s"
        ) from None


async def _settled(task: asyncio.Task[None]) -> None:
    await asyncio.wait([task], timeout=get_settings().REQUEST_TIMEOUT)


def _launch(definition: FlowDefinition, state: State, notify: Any, key: str | None) -> FlowRunner:
    return supervisor.launch(definition, state, notify, key=key)


class LocalBackend:
    """Runs flows in this process."""

    def start(
        self, definition: FlowDefinition, state: State, notify: Any, key: str | None = None
    ) -> FlowHandle:
        runner: FlowRunner = call_on(home_loop(), _launch, definition, state, notify, key)
        return FlowHandle(runner.id, definition.key, runner.key)

    async def astart(
        self, definition: FlowDefinition, state: State, notify: Any, key: str | None = None
    ) -> FlowHandle:
        runner = _launch(definition, state, notify, key)
        return FlowHandle(runner.id, definition.key, runner.key)

    def signal(self, flow_id: str, update: Any, args: tuple[Any, ...]) -> None:
        runner = supervisor.running(flow_id)
        if runner.loop is running_loop():
            runner.signal(update, args)
        else:
            call_on(_loop_of(flow_id), supervisor.signal, flow_id, update, args)

    async def asignal(self, flow_id: str, update: Any, args: tuple[Any, ...]) -> None:
        runner = supervisor.running(flow_id)
        if runner.loop is running_loop():
            runner.signal(update, args)
        else:
            await acall_on(_loop_of(flow_id), supervisor.signal, flow_id, update, args)

    def get_state(self, flow_id: str) -> State:
        # The runner replaces its state dict, never edits it, so any thread may copy it.
        return supervisor.state(flow_id)

    async def aget_state(self, flow_id: str) -> State:
        return supervisor.state(flow_id)

    def flows(self) -> list[FlowInfo]:
        return supervisor.flows()

    async def aflows(self) -> list[FlowInfo]:
        return supervisor.flows()

    def survey(self, seconds: float) -> Survey:
        return Survey(supervisor.flows())

    def inspect(self, flow_id: str) -> dict[str, Any]:
        # Like get_state: the runner replaces its fields, never edits them.
        return supervisor.details(flow_id)

    async def asnapshot(self, flow_id: str) -> Snapshot:
        return supervisor.snapshot(flow_id)

    def stop(self, flow_id: str) -> None:
        loop = _loop_of(flow_id)
        task = call_on(loop, supervisor.stop, flow_id)
        if task is not None and running_loop() is not loop:
            _result(asyncio.run_coroutine_threadsafe(_settled(task), loop), flow_id)

    async def astop(self, flow_id: str) -> None:
        loop = _loop_of(flow_id)
        task = await acall_on(loop, supervisor.stop, flow_id)
        if task is None:
            return
        if running_loop() is loop:
            await _settled(task)
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_settled(task), loop))
