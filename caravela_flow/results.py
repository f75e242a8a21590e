"""Values that step functions return to steer a flow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Ok:
    """Success; continue with ``state`` (for tasks: the task's result)."""

    state: Any


@dataclass(frozen=True, slots=True)
class Retry:
    """Take ``state`` as the new state and try the ``run`` step again."""

    state: Any


@dataclass(frozen=True, slots=True)
class Error:
    """Failure with a reason; ``run`` retries it, ``each`` fails the flow."""

    reason: Any


@dataclass(frozen=True, slots=True)
class Skip:
    """``each``: leave this item, state unchanged, and go on."""

    reason: Any = None
