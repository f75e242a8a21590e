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
#: A receive that times out sooner than this (seconds) is a connection failure,
#: retried after the backoff; one that waited this long was idle, retried at once.
QUICK_TIMEOUT = 1.0


def _error_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeout
    except ImportError:  # pragma: no cover - redis-py comes with channels-redis
        return (TimeoutError,), (OSError,)
    return (RedisTimeout, TimeoutError), (RedisConnectionError, RedisTimeout, OSError)


#: What a read that timed out raises (redis-py's ``TimeoutError``, or Python's), and
#: what a connection that failed raises: one line in the log, no traceback.
TIMEOUTS, CONNECTION_ERRORS = _error_types()


def is_socket_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a read that timed out (redis-py's or Python's ``TimeoutError``)."""
    return isinstance(exc, TIMEOUTS)


async def messages(layer: Any, channel: str, reader: str) -> AsyncIterator[Any]:
    """Every message received on ``channel``; failed receives are logged and retried.

    - A receive whose socket timed out while waiting (redis-py 8 and a host
      without a long enough ``socket_timeout``) is retried at once: the first
      is logged at WARNING in one line, later ones at DEBUG.
    - A run of connection failures (Redis down or restarting) is logged once
      at WARNING when it starts and once when receiving works again; the
      attempts in between at DEBUG; retries back off up to ``MAX_BACKOFF``.
    - A receive that fails on a message (one that cannot be decoded) is
      logged at WARNING with its traceback, each time.
    """
    backoff = FIRST_BACKOFF
    timed_out = False
    outage = 0
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    while True:
        if task is not None and task.cancelling():
            # A cancellation the receive swallowed (on Python 3.11 redis-py's
            # asyncio.wait_for can): end as cancelled rather than read on.
            raise asyncio.CancelledError
        began = loop.time()
        try:
            message = await layer.receive(channel)
        except asyncio.CancelledError:
            raise
        except CONNECTION_ERRORS as exc:
            if is_socket_timeout(exc) and loop.time() - began >= QUICK_TIMEOUT:
                (logger.debug if timed_out else logger.warning)(
                    "%s: receive on %s timed out while waiting (%s); retrying. Give the "
                    "channel layer's hosts a socket_timeout above 5 s (see check "
                    "caravela_flow.W020); later timeouts are logged at DEBUG",
                    reader,
                    channel,
                    exc_reason(exc),
                )
                timed_out = True
                continue  # it waited its timeout: ask again at once
            outage += 1
            if outage == 1:
                logger.warning(
                    "%s: receive on %s failed (%s); retrying", reader, channel, exc_reason(exc)
                )
            else:
                logger.debug("%s: receive on %s failed again: %r", reader, channel, exc)
        except Exception:
            logger.warning("%s: receive on %s failed; retrying", reader, channel, exc_info=True)
        else:
            if outage:
                logger.warning(
                    "%s: receiving on %s again after %d failed attempts", reader, channel, outage
                )
                outage = 0
            backoff = FIRST_BACKOFF
            yield message
            continue
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)
