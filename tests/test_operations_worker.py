"""``manage.py flows`` in worker mode: two real ``runworker`` processes and a private Redis.

The command sees every worker's flows, reaches a flow on any worker by id
for ``inspect`` and ``stop``, and says clearly when no worker answers.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.layers import channel_layers
from django.core.management import call_command
from django.core.management.base import CommandError

from caravela_flow import FlowHandle, start
from caravela_flow.conf import get_settings
from caravela_flow.directory import Directory
from tests.flowapp.flows import WorkerFlows
from tests.worker_support import (
    ROOT,
    WORKER_CHANNEL,
    RedisServer,
    Subscriber,
    WorkerPool,
    free_port,
    unique_prefix,
    worker_env,
    worker_mode,
)

pytestmark = pytest.mark.worker


@pytest.fixture(scope="module")
def workers(redis_server: RedisServer, worker_logs: Path) -> Iterator[WorkerPool]:
    with WorkerPool(redis_server.url, unique_prefix("operations"), worker_logs) as pool:
        pool.spawn(2)
        yield pool


@pytest.fixture
def caller(redis_server: RedisServer, workers: WorkerPool) -> Iterator[WorkerPool]:
    with worker_mode(redis_server.url, workers.prefix):
        yield workers


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("flows", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def listed() -> dict[str, dict[str, Any]]:
    data = json.loads(run_command("list", "--json")[0])
    return {row["id"]: row for row in data["flows"]}


def start_on_both(pool: WorkerPool) -> dict[int, list[FlowHandle]]:
    """Start ``hold`` flows until each worker hosts some; → worker pid → its flows."""
    pids = [worker.pid for worker in pool.workers]
    handles: list[FlowHandle] = []
    for _ in range(5):
        handles += [start(WorkerFlows, "hold", {"label": "ops"}) for _ in range(6)]
        rows = listed()
        on: dict[int, list[FlowHandle]] = {pid: [] for pid in pids}
        for handle in handles:
            on[rows[handle.id]["pid"]].append(handle)
        if all(on.values()):
            return on
    raise AssertionError("30 starts all went to one worker")


def test_list_shows_the_flows_of_both_workers_with_their_host_and_pid(caller: WorkerPool) -> None:
    on = start_on_both(caller)
    keyed = start(WorkerFlows, "hold", key=f"ops-{uuid.uuid4().hex[:8]}")

    rows = listed()
    for pid, handles in on.items():
        for handle in handles:
            row = rows[handle.id]
            assert (row["pid"], row["status"], row["name"]) == (pid, "running", "Hold")
            assert row["step"] == "wait_until(finished)"
            assert row["host"] and row["restarts"] == 0 and 0 <= row["age_seconds"] < 120
    assert rows[keyed.id]["key"] == keyed.key

    begun = time.monotonic()
    text, errors = run_command("list", "--timeout", "30")
    assert time.monotonic() - begun < 10  # done once both workers have answered
    assert errors == ""
    lines = text.splitlines()
    assert lines[0] == "Worker mode: the flows of every worker (2 answered)."
    assert lines[1].split() == [
        *["ID", "FLOW", "KEY", "STATUS", "STEP", "RESTARTS", "AGE", "WORKER"],
    ]
    for pid, handles in on.items():
        line = next(line for line in lines if line.startswith(handles[0].id))
        assert line.endswith(f":{pid}") and " running " in line
    key_line = next(line for line in lines if line.startswith(keyed.id))
    assert keyed.key is not None and keyed.key in key_line


def test_inspect_and_stop_reach_flows_on_either_worker(caller: WorkerPool) -> None:
    on = start_on_both(caller)

    for pid, handles in on.items():
        handle = handles[0]
        details = json.loads(run_command("inspect", handle.id)[0])
        assert (details["id"], details["pid"], details["status"]) == (handle.id, pid, "running")
        assert details["state"] == {"count": 0, "label": "ops"} == details["start_state"]
        assert details["flow"] == WorkerFlows.hold.key and details["name"] == "Hold"

        text, _ = run_command("stop", handle.id)
        assert text.strip() == f"Stopped flow {handle.id} (Hold); it is stopped."
        assert json.loads(run_command("inspect", handle.id)[0])["status"] == "stopped"
        again, _ = run_command("stop", handle.id)
        assert "had already ended (stopped); nothing to stop." in again

    rows = listed()
    for handles in on.values():
        assert rows[handles[0].id]["status"] == "stopped"
        assert all(rows[h.id]["status"] == "running" for h in handles[1:])


async def directory_epoch() -> float | None:
    layer = channel_layers.make_backend("default")
    try:
        return await Directory(layer).epoch()
    finally:
        await layer.close_pools()


def test_unknown_and_malformed_ids_fail_at_once(caller: WorkerPool) -> None:
    # For 2 x LEASE_SECONDS + 1 after the directory's Redis first saw a worker, an
    # unknown id may be one not re-registered yet (Redis restarted): callers keep
    # asking. Past that, an unknown id fails at once.
    epoch = asyncio.run(directory_epoch())
    assert epoch is not None
    settled = epoch + 2 * get_settings().LEASE_SECONDS + 1
    time.sleep(max(0.0, settled - time.time()))
    for action in ("inspect", "stop"):
        begun = time.monotonic()
        with pytest.raises(CommandError, match="no flow with id"):
            run_command(action, uuid.uuid4().hex)
        with pytest.raises(CommandError, match="is not a flow id"):
            run_command(action, "../../etc")
        assert time.monotonic() - begun < 3


def test_a_worker_that_does_not_answer_is_reported_and_the_others_are_listed(
    caller: WorkerPool,
) -> None:
    on = start_on_both(caller)
    paused, answering = caller.workers
    paused.send_signal(signal.SIGSTOP)
    try:
        text, errors = run_command("list", "--timeout", "1")
    finally:
        paused.send_signal(signal.SIGCONT)
    assert "1 answered; 1 holding a lease did not answer" in errors
    assert on[answering.pid][0].id in text and on[paused.pid][0].id not in text


def test_a_separate_manage_py_process_sees_the_workers_flows(
    redis_server: RedisServer, caller: WorkerPool
) -> None:
    handle = start(WorkerFlows, "hold", {"label": "seen"})
    # System checks are skipped: their warnings (unbuilt assets …) are not this test's.
    args = [sys.executable, str(ROOT / "manage.py"), "flows", "--skip-checks", "list", "--json"]
    env = worker_env(redis_server.url, caller.prefix)
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)

    assert (done.returncode, done.stderr) == (0, "")
    data = json.loads(done.stdout)
    assert data["mode"] == "worker" and data["workers_answered"] == 2
    assert handle.id in {row["id"] for row in data["flows"]}


def test_no_worker_is_a_clear_error_that_says_what_to_run(redis_server: RedisServer) -> None:
    with worker_mode(redis_server.url, unique_prefix("no-workers"), REQUEST_TIMEOUT=1):
        begun = time.monotonic()
        with pytest.raises(CommandError, match=r"no worker answered within 1 s; is `python "):
            run_command("list", "--timeout", "1")
        with pytest.raises(CommandError, match=f"runworker {WORKER_CHANNEL}` running"):
            run_command("inspect", uuid.uuid4().hex)
        assert time.monotonic() - begun < 10


def test_redis_out_of_reach_is_a_clear_error() -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with (
        worker_mode(nowhere, unique_prefix("no-redis")),
        pytest.raises(CommandError, match=r"cannot reach Redis .*; is Redis up"),
    ):
        run_command("list", "--timeout", "1")


async def test_malformed_list_and_inspect_messages_are_refused_and_the_worker_keeps_serving(
    caller: WorkerPool,
) -> None:
    worker = caller.workers[0]
    async with Subscriber() as peer:
        bad: list[dict[str, Any]] = [
            {"type": "caravela.list", "request": 5, "reply": peer.channel},
            {"type": "caravela.list", "request": "r1"},
            {"type": "caravela.inspect", "request": "r2", "reply": peer.channel, "flow_id": None},
            {"type": "caravela.inspect", "reply": peer.channel, "flow_id": uuid.uuid4().hex},
        ]
        for message in bad:
            mark = len(worker.lines)
            await peer.layer.send(worker.channel, message)
            found = await worker.await_line(r"WARNING.*refused a malformed", 20, start=mark)
            assert message["type"] in found.string
        # An inspect of an unknown flow is answered, not refused.
        reply = await peer.ask(
            worker.channel, {"type": "caravela.inspect", "flow_id": uuid.uuid4().hex}
        )
        assert (reply["ok"], reply["error"]) == (False, "not_found")
        assert isinstance(
            (await peer.ask(worker.channel, {"type": "caravela.list"}))["flows"], list
        )
    assert worker.running()
