"""Run by tests/test_leak_guard.py in a pytest subprocess, with ``-p caravela_flow.pytest_plugin``.

Not collected by the main run (its name does not start with ``test_``).
"""

from __future__ import annotations

import pytest

from caravela_flow import Flows, flow, set_state, start, wait_until
from caravela_flow.leaks import running_flows
from caravela_flow.testing import start_probe


def never(state: dict) -> bool:
    return False


def mark(state: dict) -> dict:
    return {**state, "done": True}


class LeakFlows(Flows):
    forever = flow(wait_until(never))
    quick = flow(set_state(mark))


@pytest.mark.usefixtures("flows_stopped")
def test_leaks_a_flow() -> None:
    start(LeakFlows, "forever")


@pytest.mark.usefixtures("flows_stopped")
def test_clean() -> None:
    probe = start_probe(LeakFlows, "quick")
    assert probe.wait_end(timeout=30)["type"] == "flow.done"


def test_leaks_without_asking_for_the_fixture() -> None:
    start(LeakFlows, "forever", key="unguarded")


def test_nothing_left_running() -> None:
    assert [info.flow for info in running_flows()] == []
