"""A pytest plugin (``-p tests.order_cases.keep_order``): run tests in the order given.

pytest-django moves ``django_db`` tests first; the order cases need each order.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = [arg.split("::", 1)[-1] for arg in config.args]
    items.sort(key=lambda item: wanted.index(item.name) if item.name in wanted else len(wanted))
