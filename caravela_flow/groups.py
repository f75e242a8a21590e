"""Channels group names used by caravela_flow."""

from __future__ import annotations

import re

from .conf import get_settings

_VALID = re.compile(r"[A-Za-z0-9_.\-]{1,99}")


def flow_group(flow_id: str) -> str:
    """The group every message of a flow is published to."""
    return f"{get_settings().GROUP_PREFIX}.{flow_id}"


def is_group_name(name: str) -> bool:
    """Whether Channels accepts ``name`` as a group name."""
    return _VALID.fullmatch(name) is not None
