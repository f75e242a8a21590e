"""List every page in the index's table of contents, even one nobody added there.

The ``toctree`` of ``index.md`` names the pages in reading order. A page that
it does not name (a new ``docs/*.md``) is appended to it, in file-name order,
instead of failing the build with "document isn't included in any toctree".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

FENCE = "```{toctree}"


def _append_unlisted(app: Sphinx, docname: str, source: list[str]) -> None:
    if docname != app.config.root_doc:
        return
    text = source[0]
    start = text.find(FENCE)
    if start < 0:
        return
    end = text.index("```", start + len(FENCE))
    listed = {line.strip() for line in text[start:end].splitlines()}
    srcdir = Path(app.srcdir)
    pages = sorted(
        path.relative_to(srcdir).with_suffix("").as_posix()
        for path in srcdir.rglob("*.md")
        if not path.relative_to(srcdir).parts[0].startswith(("_", "."))
    )
    unlisted = [page for page in pages if page not in listed and page != docname]
    if unlisted:
        source[0] = text[:end] + "".join(f"{page}\n" for page in unlisted) + text[end:]


def _reread_index(
    app: Sphinx, env: Any, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """Re-read the index when pages come or go, so its table of contents follows."""
    return [app.config.root_doc] if added or removed else []


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("env-get-outdated", _reread_index)
    app.connect("source-read", _append_unlisted)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
