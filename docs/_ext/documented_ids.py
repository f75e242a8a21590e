"""Fail the docs build when a system check or a setting is not documented.

Every ``caravela_flow.E0xx``/``W0xx`` id in the app's source and every field
of :class:`caravela_flow.conf.FlowSettings` must appear on the page named by
``documented_ids_page`` (default ``settings``); a missing one is a warning,
which ``sphinx-build -W`` turns into an error.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

CHECK_ID = re.compile(r"caravela_flow\.[EW]\d{3}")


def check_ids(package: Path) -> set[str]:
    """Every check id that the package's source mentions."""
    found: set[str] = set()
    for path in package.rglob("*.py"):
        found.update(CHECK_ID.findall(path.read_text(encoding="utf-8")))
    return found


def setting_names() -> set[str]:
    """The keys of the ``CARAVELA_FLOW`` setting."""
    from caravela_flow.conf import FlowSettings

    return {field.name for field in fields(FlowSettings)}


def _check(app: Sphinx, doctree: nodes.document) -> None:
    if app.env.docname != app.config.documented_ids_page:
        return
    import caravela_flow

    text = doctree.astext()
    package = Path(caravela_flow.__file__).parent
    # The page names checks in full (caravela_flow.E004) or, after a slash, by number (W002).
    numbers = set(re.findall(r"\b[EW]\d{3}\b", text))
    for check in sorted(check_ids(package)):
        if check not in text and check.rsplit(".", 1)[1] not in numbers:
            logger.warning("system check %s is not documented", check, location=app.env.docname)
    for name in sorted(setting_names()):
        if not re.search(rf"\b{name}\b", text):
            logger.warning("setting %s is not documented", name, location=app.env.docname)


def _always_reread(
    app: Sphinx, env: Any, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """Re-read the page on every build: the source it is checked against may have changed."""
    page = app.config.documented_ids_page
    return [page] if page in env.found_docs else []


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("documented_ids_page", "settings", "env")
    app.connect("env-get-outdated", _always_reread)
    app.connect("doctree-read", _check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
