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


async def messages(layer: Any, channel: str, reader: str) -> AsyncIterator[Any]:
    """Every message received on ``channel``; failed receives are logged and retried."""
    backoff = FIRST_BACKOFF
    while True:
        try:
            message = await layer.receive(channel)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("%s: receive on %s failed; retrying", reader, channel, exc_info=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            continue
        backoff = FIRST_BACKOFF
        yield message
