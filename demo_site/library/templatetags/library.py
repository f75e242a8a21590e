"""``{% svelte_components %}``: the demo's Vite bundle, or a note when it is not built."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe
from django_vite.core.asset_loader import DjangoViteAssetLoader
from django_vite.core.exceptions import DjangoViteAssetNotFoundError, DjangoViteManifestError

register = template.Library()

ENTRY = "demo_site/frontend/main.js"


@register.simple_tag
def svelte_components() -> SafeString:
    """The ``<script type="module">`` of the Svelte components (see vite.config.js)."""
    try:
        return mark_safe(DjangoViteAssetLoader.instance().generate_vite_asset(ENTRY))
    except (DjangoViteAssetNotFoundError, DjangoViteManifestError):
        # caravela_flow.W010 says so at startup too.
        return mark_safe("<!-- Svelte components are not built: run `make js` -->")
