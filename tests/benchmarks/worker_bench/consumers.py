"""The baseline's bare consumer: one ``group_send`` per message, nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.consumer import AsyncConsumer

from caravela_flow.groups import flow_group

RAW_CHANNEL = "bench-raw"


class RawConsumer(AsyncConsumer):  # type: ignore[misc]
    """Turns a ``bench.raw`` message into a ``flow.state`` for the flow's group.

    Each ``group_send`` runs in a task of its own, so a message does not wait
    for the previous one's Redis round trips (runworker hands an instance its
    messages one at a time): this is the floor of the stack, not a queue.
    """

    _sends: set[asyncio.Task[None]]

    async def bench_raw(self, message: dict[str, Any]) -> None:
        flow_id = message["flow_id"]
        state = {
            "type": "flow.state",
            "flow_id": flow_id,
            "version": message["version"],
            "state": message["state"],
        }
        if not hasattr(self, "_sends"):
            self._sends = set()
        task = asyncio.create_task(self.channel_layer.group_send(flow_group(flow_id), state))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
