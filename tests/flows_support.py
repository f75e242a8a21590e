"""Helpers shared by the engine tests (runner, supervisor, notifications).

``ClockedProbe`` is a :class:`~caravela_flow.testing.FlowProbe` that also
records the loop time at which each message was sent, so a test on virtual
time can assert *when* a step ended, not only that it did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from caravela_flow import Flows, astart
from caravela_flow.testing import FlowProbe

#: Tolerance (seconds) for instants measured on looptime's virtual clock.
TICK = 0.002

FINAL = ("flow.done", "flow.error", "flow.stopped")


class ClockedProbe(FlowProbe):
    """A probe that also records the loop time of every message it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def __call__(self, message: dict[str, Any]) -> None:
        self.times.append(asyncio.get_running_loop().time())
        super().__call__(message)

    @property
    def kinds(self) -> list[str]:
        """The ``type`` of every message, in order."""
        return [m["type"] for m in self.messages]

    def time_of(self, match: Callable[[dict[str, Any]], bool]) -> float:
        """The loop time of the first message for which ``match(message)`` holds."""
        for when, message in zip(self.times, self.messages, strict=True):
            if match(message):
                return when
        raise AssertionError(f"no matching message among {self.messages!r}")

    def end_time(self) -> float:
        """The loop time of the flow's final message."""
        return self.time_of(lambda m: m["type"] in FINAL)


async def astart_clocked(
    flows_class: type[Flows], name: str, initial_state: dict[str, Any] | None = None
) -> ClockedProbe:
    """``astart`` a flow with a fresh :class:`ClockedProbe` as its notify sink."""
    probe = ClockedProbe()
    probe.handle = await astart(flows_class, name, initial_state, notify=probe)
    return probe


def now() -> float:
    """The running loop's clock (virtual under looptime)."""
    return asyncio.get_running_loop().time()
