"""``FlowHandle``: how callers refer to a running flow."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import FlowArgumentError, MalformedFlowId

_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class FlowHandle:
    """A reference to one flow; ``str(handle) == handle.id``."""

    #: Unguessable uuid4 hex that names the flow everywhere (groups, tokens, URLs).
    id: str
    #: The flow's registry key, ``"<module>.<Class qualname>.<attr>"`` (informational).
    flow: str = ""
    #: The key the flow was started with (``start(..., key=...)``), or None.
    key: str | None = None

    def __str__(self) -> str:
        return self.id


def flow_id_of(handle: Any) -> str:
    """The id of a ``FlowHandle`` or id string; anything else (or a malformed id) is refused."""
    flow_id = handle.id if isinstance(handle, FlowHandle) else handle
    if isinstance(flow_id, str):
        if not is_flow_id(flow_id):
            raise MalformedFlowId(
                f"{flow_id!r:.80} is not a flow id (32 lowercase hex digits, FlowHandle.id)"
            )
        return flow_id
    raise FlowArgumentError(
        f"expected a FlowHandle or a flow id string, got {type(handle).__name__}: {handle!r:.80}"
    )


def is_flow_id(value: str) -> bool:
    """Whether ``value`` has the shape of a flow id."""
    return _ID.fullmatch(value) is not None
