"""A forked child (a live-test server, a pre-forking server) gets working thread pools.

Threads do not survive ``fork``: pools and the background loop copied from
the parent would take work and never run it.
"""

from __future__ import annotations

import multiprocessing
import sys

import pytest

from caravela_flow.calls import executor
from caravela_flow.loops import background_loop, call_on

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")


def double(x: int) -> int:
    return 2 * x


def use_pools_in_child() -> None:
    # Exit code 0 only if both answer in time (a copied, threadless pool would hang).
    try:
        assert executor().submit(double, 2).result(timeout=5) == 4
        assert call_on(background_loop(), double, 3) == 6
    except BaseException:
        sys.exit(1)


def test_pools_work_in_a_forked_child() -> None:
    # The parent uses both first, so their threads exist before the fork.
    assert executor().submit(double, 1).result(timeout=5) == 2
    assert call_on(background_loop(), double, 1) == 2
    child = multiprocessing.get_context("fork").Process(target=use_pools_in_child)
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("the forked child hung on a thread pool copied from the parent")
    assert child.exitcode == 0
