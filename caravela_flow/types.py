"""Type aliases shared across caravela_flow."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeAlias, Union

#: A flow's state: a dict with string keys whose values travel as JSON.
State: TypeAlias = dict[str, Any]

#: A Channels-style notification message (``{"type": "flow.state", ...}``).
Message: TypeAlias = dict[str, Any]

#: Milliseconds, or a timedelta.
Duration: TypeAlias = int | float | timedelta

#: Where notifications go besides the flow's own group.
Sink: TypeAlias = Union[str, Callable[[Message], Any], "asyncio.Queue[Message]"]

StateFn: TypeAlias = Callable[[State], State]
Predicate: TypeAlias = Callable[[State], Any]
Work: TypeAlias = Callable[..., Any | Awaitable[Any]]
