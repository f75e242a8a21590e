"""Sphinx configuration for the caravela_flow documentation.

Build with ``make docs`` (warnings are errors):
``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import django
from django.conf import settings

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]

# autodoc imports the app's modules: give Django the least it needs.
if not settings.configured:
    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "caravela_flow",
            "channels",
        ],
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
        USE_TZ=True,
    )
    django.setup()

import caravela_flow  # noqa: E402  (after Django is set up)

project = "caravela_flow"
author = "The caravela_flow authors"
copyright = "the caravela_flow authors"
release = caravela_flow.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "documented_ids",
    "listed_pages",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]

# Markdown: heading anchors so links such as client.md#adding-your-own-component resolve.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": False}

html_theme = "furo"
html_title = f"caravela_flow {release}"


def setup(app: object) -> None:
    """Highlight Svelte components as HTML (Pygments has no Svelte lexer)."""
    from pygments.lexers.html import HtmlLexer
    from pygments.token import Error, Text

    class SvelteLexer(HtmlLexer):  # type: ignore[misc]
        """HTML, with Svelte's ``attr={expression}`` shown as plain text instead of errors."""

        name = "Svelte"
        aliases = ["svelte"]

        def get_tokens_unprocessed(self, text, stack=("root",)):  # type: ignore[no-untyped-def]
            for index, token, value in super().get_tokens_unprocessed(text, stack):
                yield index, Text if token is Error else token, value

    app.add_lexer("svelte", SvelteLexer)  # type: ignore[attr-defined]
