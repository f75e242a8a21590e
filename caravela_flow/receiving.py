"""Reading a channel forever, surviving a layer that fails for a while (Redis restarting)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

logger = logging.getLogger("caravela_flow")

#: Seconds between attempts after a failed receive: doubling from the first to the last.
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0

#: Failures of the connection itself (Redis down or restarting, a timeout):
#: logged as one line, no traceback. redis-py's errors derive from these.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, OSError, TimeoutError)
try:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError:  # pragma: no cover - redis-py comes with channels-redis
    pass
else:
    CONNECTION_ERRORS += (RedisConnectionError, RedisTimeoutError)


async def messages(layer: Any, channel: str, reader: str) -> AsyncIterator[Any]:
    """Every message received on ``channel``; failed receives are logged and retried.

    A receive that fails on a message (one that cannot be decoded) is logged
    at WARNING with its traceback, each time. A run of connection failures
    (Redis down or restarting) is logged once at WARNING when it starts and
    once when receiving works again; the attempts in between at DEBUG.
    """
    backoff = FIRST_BACKOFF
    outage = 0
    while True:
        try:
            message = await layer.receive(channel)
        except asyncio.CancelledError:
            raise
        except CONNECTION_ERRORS as exc:
            outage += 1
            if outage == 1:
                logger.warning(
                    "%s: receive on %s failed (%s: %s); retrying",
                    reader,
                    channel,
                    type(exc).__name__,
                    exc,
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
