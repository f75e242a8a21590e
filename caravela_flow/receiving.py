"""Reading a channel forever, surviving a layer that fails for a while (Redis restarting)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from .calls import exc_reason

logger = logging.getLogger("caravela_flow")

#: Seconds between attempts after a failed receive: doubling from the first to the last.
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
#: A receive that times out sooner than this (seconds) is retried after the backoff.
QUICK_TIMEOUT = 1.0


def _timeout_types() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import TimeoutError as RedisTimeout
    except ImportError:  # pragma: no cover - redis-py comes with channels-redis
        return (TimeoutError,)
    return (RedisTimeout, TimeoutError)


#: What a read that timed out raises: redis-py's ``TimeoutError``, or Python's.
TIMEOUTS = _timeout_types()


def is_socket_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a read that timed out (redis-py's or Python's ``TimeoutError``)."""
    return isinstance(exc, TIMEOUTS)


async def messages(layer: Any, channel: str, reader: str) -> AsyncIterator[Any]:
    """Every message received on ``channel``; failed receives are logged and retried.

    A receive whose socket timed out while waiting (with redis-py 8 and a host
    without a long enough ``socket_timeout``) is retried at once: the first is
    logged at WARNING in one line, later ones at DEBUG, never with a traceback.
    """
    backoff = FIRST_BACKOFF
    timed_out = False
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        try:
            message = await layer.receive(channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_socket_timeout(exc):
                (logger.debug if timed_out else logger.warning)(
                    "%s: receive on %s timed out while waiting (%s); retrying. Give the "
                    "channel layer's hosts a socket_timeout above 5 s (see check "
                    "caravela_flow.W020); later timeouts are logged at DEBUG",
                    reader,
                    channel,
                    exc_reason(exc),
                )
                timed_out = True
                if loop.time() - began >= QUICK_TIMEOUT:
                    continue  # it waited its timeout: ask again at once
            else:
                logger.warning("%s: receive on %s failed; retrying", reader, channel, exc_info=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            continue
        backoff = FIRST_BACKOFF
        yield message
