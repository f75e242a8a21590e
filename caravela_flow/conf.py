"""The ``CARAVELA_FLOW`` settings dict, merged over defaults and cached.

The cache is dropped on Django's ``setting_changed`` signal, so
``override_settings(CARAVELA_FLOW=...)`` works in tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

MODES = ("local", "worker")
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
#: One or more path segments, each ending with "/": "ws/flows/", "live/".
_PATH = re.compile(r"(?:[A-Za-z0-9_\-~]+(?:\.[A-Za-z0-9_\-~]+)*/)+")


@dataclass(frozen=True)
class FlowSettings:
    """Effective settings; each field is a key of ``CARAVELA_FLOW``."""

    #: ``"local"``: runners live in the calling process; ``"worker"``: in runworker processes.
    MODE: str = "local"
    #: Seconds a finished flow's final state and status stay readable.
    RETAIN_SECONDS: float = 300.0
    #: Threads that run sync step functions.
    THREADS: int = 32
    #: Channel layer alias used for groups and the worker channel.
    CHANNEL_LAYER: str = "default"
    #: Prefix of every group name (a flow's group is ``<prefix>.<flow id>``).
    GROUP_PREFIX: str = "caravela_flow"
    #: Worker mode: the channel that ``runworker`` listens on.
    WORKER_CHANNEL: str = "caravela-flows"
    #: Worker mode: seconds ``start`` waits for a worker's acknowledgement.
    START_TIMEOUT: float = 5.0
    #: Worker mode: seconds ``signal``/``get_state``/``stop`` wait for the runner's reply.
    REQUEST_TIMEOUT: float = 5.0
    #: Worker mode: seconds a worker takes to stop its flows on SIGTERM/SIGINT.
    SHUTDOWN_TIMEOUT: float = 5.0
    #: Seconds between renewals of group memberships (channels-redis expires them).
    GROUP_REFRESH_SECONDS: float = 3600.0
    #: Seconds a subscription token stays valid.
    TOKEN_MAX_AGE: int = 3600
    #: Worker mode: seconds a worker's lease on its flows lasts without a heartbeat; a dead
    #: worker's flows are adopted within twice this.
    LEASE_SECONDS: float = 5.0
    #: Path of the WebSocket routes (``"ws/flows/"``: ``/ws/flows/<token>/``), after the
    #: script prefix (``FORCE_SCRIPT_NAME``) in the URLs pages use.
    WEBSOCKET_PATH: str = "ws/flows/"


_cached: FlowSettings | None = None


def _validate(values: dict[str, Any]) -> FlowSettings:
    known = {f.name for f in fields(FlowSettings)}
    unknown = set(values) - known
    if unknown:
        raise ImproperlyConfigured(
            f"CARAVELA_FLOW has unknown key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )
    result = FlowSettings(**values)
    if result.MODE not in MODES:
        raise ImproperlyConfigured(
            f"CARAVELA_FLOW['MODE'] must be one of {', '.join(MODES)}, got {result.MODE!r}"
        )
    for name in ("RETAIN_SECONDS", "START_TIMEOUT", "REQUEST_TIMEOUT", "SHUTDOWN_TIMEOUT"):
        value = getattr(result, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ImproperlyConfigured(f"CARAVELA_FLOW[{name!r}] must be a number >= 0")
    threads = result.THREADS
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ImproperlyConfigured("CARAVELA_FLOW['THREADS'] must be an int >= 1")
    # Group names are "<prefix>.<flow id>" and "<prefix>-ctl.<flow id>" (32 hex digits);
    # Channels refuses names that are not ASCII letters, digits, "-", "_", "." under 100.
    for name, longest in (("GROUP_PREFIX", 60), ("WORKER_CHANNEL", 99)):
        value = getattr(result, name)
        if not isinstance(value, str) or not _NAME.fullmatch(value) or len(value) > longest:
            raise ImproperlyConfigured(
                f"CARAVELA_FLOW[{name!r}] must be at most {longest} ASCII letters, digits, "
                f"'-', '_' or '.', got {value!r}"
            )
    lease = result.LEASE_SECONDS
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or lease <= 0:
        raise ImproperlyConfigured("CARAVELA_FLOW['LEASE_SECONDS'] must be a number > 0")
    refresh = result.GROUP_REFRESH_SECONDS
    if isinstance(refresh, bool) or not isinstance(refresh, (int, float)) or refresh <= 0:
        raise ImproperlyConfigured("CARAVELA_FLOW['GROUP_REFRESH_SECONDS'] must be a number > 0")
    age = result.TOKEN_MAX_AGE
    if isinstance(age, bool) or not isinstance(age, (int, float)) or age <= 0:
        raise ImproperlyConfigured("CARAVELA_FLOW['TOKEN_MAX_AGE'] must be a number of seconds > 0")
    path = result.WEBSOCKET_PATH
    if not isinstance(path, str) or not _PATH.fullmatch(path) or len(path) > 200:
        raise ImproperlyConfigured(
            "CARAVELA_FLOW['WEBSOCKET_PATH'] must be a relative URL path of segments that "
            f"each end with '/', such as 'ws/flows/' (no leading '/'), got {path!r:.80}"
        )
    return result


def get_settings() -> FlowSettings:
    """The effective settings (cached)."""
    global _cached
    if _cached is None:
        values = getattr(django_settings, "CARAVELA_FLOW", None) or {}
        if not isinstance(values, dict):
            raise ImproperlyConfigured("CARAVELA_FLOW must be a dict")
        _cached = _validate(values)
    return _cached


@receiver(setting_changed)
def _reset(setting: str, **kwargs: Any) -> None:
    global _cached
    if setting == "CARAVELA_FLOW":
        _cached = None
