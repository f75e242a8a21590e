"""Run by tests/test_pytest_django_order.py in a pytest subprocess, in both orders.

Not collected by the main run (its name does not start with ``test_``).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from caravela_flow import Flows, Ok, flow, run
from caravela_flow.testing import start_probe


def count_users(state: dict) -> Ok:
    return Ok({**state, "users": User.objects.count()})


def no_database(state: dict) -> Ok:
    return Ok({**state, "ran": True})


class OrderFlows(Flows):
    uses_the_database = flow(run(count_users), initial_state={"users": None})
    no_database = flow(run(no_database), initial_state={"ran": False})


@pytest.mark.django_db
def test_a_flow_that_uses_the_database() -> None:
    probe = start_probe(OrderFlows, "uses_the_database")
    assert probe.wait_end(timeout=30)["type"] == "flow.done"
    assert probe.states[-1]["users"] == 0


def test_a_flow_that_never_touches_the_database() -> None:
    probe = start_probe(OrderFlows, "no_database")
    final = probe.wait_end(timeout=30)
    assert final["type"] == "flow.done", final
    assert probe.states[-1]["ran"] is True
