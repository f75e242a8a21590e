"""redis-py 8 and channels-redis's blocking read: check ``caravela_flow.W020``.

redis-py 8 gives every connection a 5 s ``socket_timeout`` by default, and
channels-redis waits for a message with a 5 s blocking pop (``BZPOPMIN``), so
an idle ``receive`` times out instead of returning empty. A host needs a
``socket_timeout`` above that wait (or ``None``).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.core.checks import CheckMessage, Warning

#: Seconds channels-redis's ``receive`` blocks in Redis (``RedisChannelLayer.brpop_timeout``).
BLOCKING_READ_SECONDS = 5
#: The ``socket_timeout`` the hint suggests.
SUGGESTED_SOCKET_TIMEOUT = 15


def redis_major() -> int | None:
    """The major version of the installed redis-py, or None when it is not installed."""
    try:
        version = metadata.version("redis")
    except metadata.PackageNotFoundError:
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _timeout_of(host: Any) -> tuple[bool, Any]:
    """(whether the host sets a socket_timeout, its value)."""
    if isinstance(host, dict):
        if "socket_timeout" in host:
            return True, host["socket_timeout"]
        address = host.get("address")
    else:
        address = host
    if isinstance(address, str):
        query = parse_qs(urlsplit(address).query)
        if "socket_timeout" in query:
            return True, query["socket_timeout"][-1]
    return False, None


def _too_short(value: Any) -> bool:
    if value is None:
        return False  # no timeout: the blocking read is never cut
    try:
        return float(value) <= BLOCKING_READ_SECONDS
    except (TypeError, ValueError):
        return False  # not ours to judge; redis-py will refuse it


def _times_out(host: Any) -> bool:
    given, value = _timeout_of(host)
    return not given or _too_short(value)


def _fixed(host: Any) -> dict[str, Any]:
    if isinstance(host, dict):
        return {**host, "socket_timeout": SUGGESTED_SOCKET_TIMEOUT}
    if isinstance(host, (tuple, list)) and len(host) == 2:
        return {
            "address": f"redis://{host[0]}:{host[1]}/0",
            "socket_timeout": SUGGESTED_SOCKET_TIMEOUT,
        }
    return {"address": host, "socket_timeout": SUGGESTED_SOCKET_TIMEOUT}


def check_socket_timeouts(alias: str, layer: dict[str, Any]) -> list[CheckMessage]:
    """W020 for a channels-redis layer whose hosts time out its idle reads under redis-py 8."""
    if "channels_redis.core" not in str(layer.get("BACKEND", "")):
        return []
    major = redis_major()
    if major is None or major < 8:
        return []
    config = layer.get("CONFIG") or {}
    hosts = config.get("hosts") or ["redis://localhost:6379"]
    if not isinstance(hosts, (list, tuple)):
        return []  # channels-redis refuses it itself
    bad = [host for host in hosts if _times_out(host)]
    if not bad:
        return []
    fixed = {
        **layer,
        "CONFIG": {**config, "hosts": [_fixed(h) if _times_out(h) else h for h in hosts]},
    }
    return [
        Warning(
            f"CHANNEL_LAYERS[{alias!r}]: with redis-py {major}, a host without a "
            f"socket_timeout above {BLOCKING_READ_SECONDS} s times out every idle receive "
            f"(redis-py's default is 5 s, channels-redis blocks {BLOCKING_READ_SECONDS} s "
            f"waiting for a message): {', '.join(repr(h) for h in bad)}.",
            hint=f"Give each host a socket_timeout: CHANNEL_LAYERS[{alias!r}] = {fixed!r}",
            id="caravela_flow.W020",
        )
    ]
