"""``manage.py flows list|inspect|stop`` in local mode, run in-process with ``call_command``.

In local mode the command sees the flows of its own process: here, flows
this test starts.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from caravela_flow import (
    FlowDefinitionError,
    FlowHandle,
    Flows,
    flow,
    get_state,
    signal,
    start,
    stop,
    wait_until,
)
from caravela_flow.loops import call_on
from caravela_flow.management.commands.flows import age, table
from caravela_flow.operations import flow_title
from caravela_flow.supervisor import FlowInfo, supervisor


def released(state: dict[str, Any]) -> bool:
    return bool(state.get("release"))


class OpsFlows(Flows):
    watch_queue = flow(wait_until(released), initial_state={"n": 0})
    nightly = flow(wait_until(released), verbose_name="Nightly report")


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("flows", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def flows() -> Iterator[list[FlowHandle]]:
    """Two running flows of this process (one keyed); stopped at the end."""
    handles = [
        start(OpsFlows, "watch_queue", {"n": 1}),
        start(OpsFlows, "nightly", key=f"night-{uuid.uuid4().hex[:6]}"),
    ]
    for handle in handles:
        # The runner's first step was scheduled on its loop before this: once a
        # callback queued now has run, each flow is at its first step.
        call_on(supervisor.get(handle.id).loop, lambda: None)
    yield handles
    for handle in handles:
        if supervisor.get(handle.id).status.public == "running":
            stop(handle)


def test_list_shows_this_process_s_flows_as_a_table_and_says_what_it_can_see(
    flows: list[FlowHandle],
) -> None:
    output = run_command("list")

    assert output.startswith("Local mode: only the flows of this process are listed")
    header = next(line for line in output.splitlines() if line.startswith("ID "))
    assert header.split() == ["ID", "FLOW", "KEY", "STATUS", "STEP", "RESTARTS", "AGE"]
    watch = next(line for line in output.splitlines() if line.startswith(flows[0].id))
    assert re.search(r"Watch queue\s+-\s+running\s+wait_until\(released\)\s+0\s+\d+ s$", watch)
    nightly = next(line for line in output.splitlines() if line.startswith(flows[1].id))
    assert f"Nightly report  {flows[1].key}" in re.sub(r" {2,}", "  ", nightly)
    assert re.search(r"\d+ flow\(s\), \d+ running\.$", output.strip())


def test_list_json_gives_every_field_and_the_scope(flows: list[FlowHandle]) -> None:
    data = json.loads(run_command("list", "--json"))

    assert data["mode"] == "local"
    assert "only the flows of this process" in data["scope"]
    rows = {row["id"]: row for row in data["flows"]}
    row = rows[flows[1].id]
    assert row["name"] == "Nightly report"
    assert row["flow"] == OpsFlows.nightly.key
    assert row["key"] == flows[1].key
    assert (row["status"], row["step"], row["restarts"]) == ("running", "wait_until(released)", 0)
    assert 0 <= row["age_seconds"] < 60
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", row["started_at"])
    assert (row["host"], row["pid"]) == (None, None)


def test_list_with_no_flows_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "_flows", {})

    output = run_command("list")

    assert "only the flows of this process" in output
    assert output.strip().endswith("No flows here.")
    assert json.loads(run_command("list", "--json"))["flows"] == []


def test_inspect_prints_the_flow_s_details_and_current_state(flows: list[FlowHandle]) -> None:
    signal(flows[0], {"n": 5})

    details = json.loads(run_command("inspect", flows[0].id))

    assert details["id"] == flows[0].id
    assert details["name"] == "Watch queue"
    assert details["status"] == "running"
    assert details["state"] == {"n": 5} == get_state(flows[0])
    assert details["start_state"] == {"n": 1}
    assert details["step"] == "wait_until(released)"
    assert (details["restart"], details["reason"], details["key"]) == ("transient", None, None)
    assert details["version"] >= 1


@pytest.mark.parametrize("action", ["inspect", "stop"])
@pytest.mark.parametrize("bad", ["", "x" * 10_000, "../../etc", uuid.uuid4().hex.upper()])
def test_a_malformed_id_is_refused_at_once(action: str, bad: str) -> None:
    with pytest.raises(CommandError, match="is not a flow id"):
        run_command(action, bad)


@pytest.mark.parametrize("action", ["inspect", "stop"])
def test_an_unknown_id_is_a_clear_error_that_explains_local_mode(action: str) -> None:
    with pytest.raises(CommandError, match=r"no flow with id .*its own process"):
        run_command(action, uuid.uuid4().hex)


def test_stop_stops_the_flow_and_says_so_and_a_second_stop_says_it_had_ended(
    flows: list[FlowHandle],
) -> None:
    output = run_command("stop", flows[0].id)

    assert output.strip() == f"Stopped flow {flows[0].id} (Watch queue); it is stopped."
    assert supervisor.get(flows[0].id).status.public == "stopped"
    again = run_command("stop", flows[0].id)
    assert again.strip() == (
        f"Flow {flows[0].id} (Watch queue) had already ended (stopped); nothing to stop."
    )
    assert supervisor.get(flows[1].id).status.public == "running"


def test_a_finished_flow_is_listed_as_ended_with_no_step(flows: list[FlowHandle]) -> None:
    runner = supervisor.get(flows[1].id)
    assert runner.task is not None
    signal(flows[1], {"release": True})
    ended = asyncio.run_coroutine_threadsafe(asyncio.wait([runner.task]), runner.loop)
    ended.result(10)

    rows = {row["id"]: row for row in json.loads(run_command("list", "--json"))["flows"]}
    assert (rows[flows[1].id]["status"], rows[flows[1].id]["step"]) == ("done", None)


def test_list_refuses_a_timeout_that_is_not_positive() -> None:
    with pytest.raises(CommandError, match="--timeout must be"):
        run_command("list", "--timeout", "0")


def test_the_command_needs_an_action() -> None:
    with pytest.raises(CommandError):
        run_command()


# -- names, ages and the table ---------------------------------------------------


def test_verbose_name_defaults_to_the_attribute_in_words_and_is_checked() -> None:
    assert OpsFlows.watch_queue.verbose_name == "Watch queue"
    assert OpsFlows.nightly.verbose_name == "Nightly report"
    assert flow_title(OpsFlows.nightly.key) == "Nightly report"
    assert flow_title("some.module.Unknown.send_mail") == "Send mail"
    for bad in ("", "   ", 3, "x" * 101):
        with pytest.raises(FlowDefinitionError, match="verbose_name"):
            flow(wait_until(released), verbose_name=bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "?"),
        (0.4, "0 s"),
        (59.9, "59 s"),
        (60, "1 min"),
        (3599, "59 min"),
        (3600 + 125, "1 h 2 min"),
        (86400 * 2 + 3600 * 5, "2 d 5 h"),
    ],
)
def test_ages_read_well(seconds: float | None, text: str) -> None:
    assert age(seconds) == text


def test_the_table_aligns_columns_and_cuts_long_cells() -> None:
    row = {
        "id": "a" * 32,
        "name": "Sync book",
        "key": "k" * 80,
        "status": "running",
        "step": None,
        "restarts": 2,
        "age_seconds": 75,
        "host": "web-1",
        "pid": 42,
    }
    lines = table([row], worker=True).splitlines()
    assert lines[0].split() == ["ID", "FLOW", "KEY", "STATUS", "STEP", "RESTARTS", "AGE", "WORKER"]
    cells = ["a" * 32, "Sync", "book", "k" * 39 + "…", "running", "-", "2", "1", "min"]
    assert lines[1].split() == [*cells, "web-1:42"]
    assert lines[0].index("KEY") == lines[1].index("kkk")


def test_flow_info_from_the_wire_ignores_unknown_fields_and_refuses_bad_ones() -> None:
    good = {"id": "a" * 32, "flow": "m.C.f", "status": "running", "version": 1, "restarts": 0}
    assert FlowInfo.from_wire({**good, "later": "field"}) == FlowInfo(
        "a" * 32, "m.C.f", "running", 1, 0
    )
    for bad in (
        None,
        [],
        {**good, "id": 3},
        {**good, "version": "1"},
        {**good, "restarts": True},
        {**good, "pid": "7"},
        {**good, "started_at": "now"},
        {**good, "key": 5},
    ):
        with pytest.raises(ValueError, match="flow description"):
            FlowInfo.from_wire(bad)
