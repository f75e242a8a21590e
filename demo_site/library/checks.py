"""System checks of the demo: is Alpine.js there to make the live pages live?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register


@register()
def alpinejs_installed(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when node_modules/alpinejs is missing: pages render but never update live."""
    dist = Path(getattr(settings, "ALPINEJS_DIST", ""))
    if (dist / "module.esm.min.js").is_file():
        return []
    return [
        Warning(
            f"Alpine.js is not installed ({dist} is missing): the demo's sync indicators "
            "and import progress will not update live.",
            hint="Run `make node-deps` (npm ci) in the project root.",
            id="library.W001",
        )
    ]
