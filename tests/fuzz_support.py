"""Hypothesis strategies for junk: values and messages a buggy or hostile peer could send.

Values are what a channel layer can carry (msgpack for channels-redis):
``None``, booleans, 64-bit integers, floats, text, bytes, lists and dicts of them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import strategies as st

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.binary(max_size=16)
)

#: Any value a layer message may hold.
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)

#: Something shaped like an id, or anything else.
ids = (
    st.builds(lambda: uuid.uuid4().hex)
    | st.sampled_from(["", "x" * 200, "../../etc", "A" * 32])
    | junk
)


def message(
    types: list[str], **fields: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with a ``type`` from ``types`` (or junk, or none) and each of ``fields`` optional."""
    kind = st.sampled_from(types) | junk
    return st.fixed_dictionaries({"type": kind}, optional=fields) | st.fixed_dictionaries(
        {}, optional=fields
    )


@contextmanager
def captured(caplog: pytest.LogCaptureFixture, name: str = "caravela_flow") -> Iterator[None]:
    """Let ``caplog`` see ``name``'s records (the ``caravela_flow`` logger does not propagate)."""
    logger = logging.getLogger(name)
    logger.addHandler(caplog.handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level]
