"""Signal functions outside a flows module: one marked remote-callable, one not."""

from __future__ import annotations

from typing import Any

from caravela_flow import remote_callable


@remote_callable
def tag(state: dict[str, Any], label: str) -> dict[str, Any]:
    """Append ``label`` to ``state["tags"]`` (callable from other processes: it is marked)."""
    return {**state, "tags": [*state.get("tags", []), label]}


def untagged(state: dict[str, Any]) -> dict[str, Any]:
    """Not marked, and not defined in a flows module: worker-mode messages may not call it."""
    return {**state, "untagged": True}
