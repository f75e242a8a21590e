"""Flows and signal functions used by the worker-mode tests.

They live in an installed app because in worker mode a flow travels by its
registry key and a signal function by its import path, and both are resolved
in the ``runworker`` processes.
"""

from __future__ import annotations

from typing import Any

from caravela_flow import Flows, flow, set_state, wait_until

# Imported here, defined elsewhere: `tag` is marked remote-callable, `untagged` is not
# (a name a flows module merely imports is never callable by path).
from .extras import tag, untagged  # noqa: F401


def increment(state: dict[str, Any], key: str = "count", by: int = 1) -> dict[str, Any]:
    """Add ``by`` to ``state[key]``."""
    return {**state, key: state.get(key, 0) + by}


def put(state: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set ``state[key] = value``."""
    return {**state, key: value}


def fill(state: dict[str, Any], n: int, size: int) -> dict[str, Any]:
    """Set ``state["n"] = n`` and a ``blob`` of ``size`` characters (a big state, made here)."""
    return {**state, "n": n, "blob": f"{n:08d}" * (size // 8)}


def finish(state: dict[str, Any]) -> dict[str, Any]:
    """Let a ``WorkerFlows.hold`` flow end."""
    return {**state, "finish": True}


def finished(state: dict[str, Any]) -> bool:
    return bool(state.get("finish"))


def mark_ran(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "ran": True}


class WorkerFlows(Flows):
    #: Runs until a signal sets ``finish``, then ends with ``flow.done``.
    hold = flow(wait_until(finished), set_state(mark_ran), initial_state={"count": 0})
    #: Ends at once.
    quick = flow(set_state(mark_ran), initial_state={"ran": False})
    #: As ``hold``, but never restarted: not adopted when its worker is lost.
    hold_temporary = flow(
        wait_until(finished), set_state(mark_ran), initial_state={"count": 0}, restart="temporary"
    )
