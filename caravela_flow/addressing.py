"""Worker mode: names that travel between processes.

Flow definitions travel by registry key, resolved only among the flows the
process registered (autodiscovery imports every app's ``flows`` module);
signal functions by import path (:mod:`caravela_flow.callables`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .conf import get_settings
from .errors import FlowNotFound
from .registry import registry

if TYPE_CHECKING:
    from .definition import FlowDefinition


def workers_group() -> str:
    """The group every worker host joins (for questions to all workers)."""
    return f"{get_settings().GROUP_PREFIX}-workers"


def resolve_flow(key: Any) -> FlowDefinition:
    """The definition registered under ``key``; nothing is imported on a message's word."""
    if not isinstance(key, str) or not key or len(key) > 300:
        raise FlowNotFound(f"not a flow key: {key!r:.80}")
    return registry.get(key)
