"""The process-wide registry of flow definitions, keyed by ``FlowDefinition.key``."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .errors import FlowNotFound

if TYPE_CHECKING:
    from .definition import FlowDefinition


class Registry:
    """Maps ``"<module>.<Class qualname>.<attr>"`` to its :class:`FlowDefinition`."""

    def __init__(self) -> None:
        self._registry: dict[str, FlowDefinition] = {}
        self._lock = threading.Lock()

    def register(self, definition: FlowDefinition) -> None:
        """Add (or replace, on re-import) a definition."""
        with self._lock:
            self._registry[definition.key] = definition

    def get(self, key: str) -> FlowDefinition:
        """The definition under ``key``, or :class:`FlowNotFound`."""
        try:
            return self._registry[key]
        except KeyError:
            raise FlowNotFound(f"no flow is registered under {key!r}") from None

    def keys(self) -> list[str]:
        """Every registered key, sorted."""
        return sorted(self._registry)

    def __contains__(self, key: object) -> bool:
        return key in self._registry


registry = Registry()
