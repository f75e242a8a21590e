"""Fuzzing a real ``runworker`` over a private redis-server: junk in, a working worker out.

Each example sends a batch of random and malformed messages over the Redis
layer, to the channel every worker reads and to the worker host's own
channel, some aimed at a running flow; then a real flow is started,
signalled and read, and the flow the junk aimed at still answers. The
worker's log must show no ERROR, and at most one refusal (a WARNING) per
junk message.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caravela_flow import aget_state, asignal, astart, remote
from caravela_flow.host import _HANDLERS
from tests.flowapp.flows import WorkerFlows, increment
from tests.fuzz_support import ids, junk, message
from tests.worker_support import (
    WORKER_CHANNEL,
    RedisServer,
    Subscriber,
    Worker,
    WorkerPool,
    worker_mode,
)

pytestmark = pytest.mark.worker

#: Every type a worker host handles (its own table).
TYPES = sorted(_HANDLERS)
#: Log lines that mean something crashed. (A flow that an allowed signal function
#: crashes logs a WARNING with its traceback, from the runner: that is no refusal.)
CRASHED = re.compile(r" (ERROR|CRITICAL) ")
#: The worker's refusals.
WARNING = re.compile(r" WARNING caravela_flow\.worker: ")


@pytest.fixture
def pool(make_pool: Callable[[], WorkerPool]) -> WorkerPool:
    """One ``runworker`` (for every example of the test)."""
    one = make_pool()
    one.spawn(1)
    return one


def batch(flow_id: str, reply: str) -> st.SearchStrategy[list[tuple[bool, dict[str, Any]]]]:
    """(to the host's own channel?, message) pairs; string keys only, as the layer needs."""
    fields = {
        "request": st.builds(lambda: uuid.uuid4().hex) | ids,
        "reply": st.just(reply) | junk,
        "flow_id": st.just(flow_id) | ids,
        "flow": st.just(WorkerFlows.hold.key) | junk,
        "state": junk,
        "update": junk,
        "fn": st.sampled_from(["tests.flowapp.flows:put", "subprocess:call"]) | junk,
        "args": junk,
        "notify": junk,
        "key": junk,
    }
    messages = message(TYPES, **fields) | st.dictionaries(
        st.text(max_size=8).filter(lambda k: k != "__asgi_channel__"), junk, max_size=4
    )
    return st.lists(st.tuples(st.booleans(), messages), min_size=20, max_size=40)


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_a_real_worker_fed_junk_keeps_serving_and_logs_each_refusal_once(
    redis_server: RedisServer, pool: WorkerPool, data: st.DataObject
) -> None:
    [worker] = pool.workers
    # Entered on the test's loop, so that leaving it closes this loop's client there.
    with worker_mode(redis_server.url, pool.prefix, START_TIMEOUT=10):
        try:
            sent, mark = await feed(worker, data)
        finally:
            # Close this loop's client before the test's loop closes: its receive may
            # survive one cancel() (redis-py on Python 3.11), which would hang the loop.
            await remote.client().close()
    assert worker.running()
    logged = worker.lines[mark:]
    assert not [line for line in logged if CRASHED.search(line)], "".join(logged[-40:])
    warnings = [line for line in logged if WARNING.search(line)]
    assert len(warnings) <= len(sent) + 1, "".join(warnings)


async def feed(worker: Worker, data: st.DataObject) -> tuple[list[Any], int]:
    """Send the worker a batch of junk, then check it still serves; → (the batch, log mark)."""
    victim = await astart(WorkerFlows, "hold")
    async with Subscriber() as peer:
        sent = data.draw(batch(victim.id, peer.channel))
        mark = len(worker.lines)
        for to_host, junk_message in sent:
            await peer.layer.send(worker.channel if to_host else WORKER_CHANNEL, junk_message)
        # The worker reads each channel in order: once these are answered, the junk is handled.
        await peer.hosted(worker)
        await peer.ask(WORKER_CHANNEL, {"type": "caravela.start", "flow": "x.Y.z", "flow_id": "-"})

        handle = await astart(WorkerFlows, "hold")
        await asignal(handle, increment)
        assert await aget_state(handle) == {"count": 1}
        # The junk's target is still reachable (running, or ended by a forged stop).
        assert isinstance(await aget_state(victim), dict)
    return sent, mark
