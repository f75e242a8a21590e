"""A pytest plugin with the ``flows_stopped`` fixture. Enable it in ``conftest.py``::

    pytest_plugins = ["caravela_flow.pytest_plugin"]

A test that uses ``flows_stopped`` has every flow it started stopped at its
end; if one was still running, the test errors at teardown, naming the flow.
To guard every test, set ``caravela_flow_stop_flows = true`` in the pytest
configuration (``[tool.pytest.ini_options]``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .leaks import FlowGuard, leak_message

INI_OPTION = "caravela_flow_stop_flows"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_OPTION,
        type="bool",
        default=False,
        help="caravela_flow: use the flows_stopped fixture in every test",
    )


@pytest.fixture
def flows_stopped(request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop every flow the test started; fail it when one was still running at its end."""
    guard = FlowGuard()
    yield
    leaked = guard.stop_leaked()
    if leaked:
        pytest.fail(leak_message(request.node.nodeid, leaked), pytrace=False)


@pytest.fixture(autouse=True)
def _caravela_flow_stop_flows(request: pytest.FixtureRequest) -> None:
    if request.config.getini(INI_OPTION):
        request.getfixturevalue("flows_stopped")
