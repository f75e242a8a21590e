"""Django app configuration: autodiscovery of ``flows`` modules and system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class CaravelaFlowConfig(AppConfig):
    name = "caravela_flow"
    verbose_name = "Caravela Flow"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .registry import registry

        autodiscover_modules("flows", register_to=registry)
