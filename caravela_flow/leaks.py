"""Flows a test left running: what ``FlowTestMixin`` and the ``flows_stopped`` fixture check.

A :class:`FlowGuard` notes the flows running when a test begins; at its end,
:meth:`FlowGuard.stop_leaked` stops every running flow that was not there
before and returns them, so the test can fail naming each one. In worker mode
the flows are those that every worker reports (``caravela.list``).
"""

from __future__ import annotations

from .api import backend, stop
from .errors import FlowNotFound
from .supervisor import FlowInfo


def running_flows() -> list[FlowInfo]:
    """The flows running now (in local mode: in this process; in worker mode: on any worker)."""
    return [info for info in backend().flows() if info.status == "running"]


class FlowGuard:
    """Stops the flows started after it was made and says which ones were still running."""

    def __init__(self) -> None:
        #: Ids of the flows already running when the guard was made; left alone.
        self.before = frozenset(info.id for info in running_flows())

    def stop_leaked(self) -> list[FlowInfo]:
        """Stop every flow running now that was not running before; return those stopped."""
        leaked = []
        for info in running_flows():
            if info.id in self.before:
                continue
            try:
                stop(info.id)
            except FlowNotFound:
                continue  # it ended meanwhile, or its event loop has stopped: not running
            leaked.append(info)
        return leaked


def leak_message(test: str, leaked: list[FlowInfo]) -> str:
    """``"<test> left 2 flows running (now stopped): <flow> <id>, ..."``."""
    count = f"{len(leaked)} flow{'s' if len(leaked) != 1 else ''}"
    names = ", ".join(
        f"{info.flow} {info.id}" + (f" (key {info.key!r})" if info.key is not None else "")
        for info in leaked
    )
    return (
        f"{test} left {count} running (now stopped): {names}. Stop the flows a test "
        "starts, or wait for their end (FlowProbe.wait_end / await_end)."
    )
