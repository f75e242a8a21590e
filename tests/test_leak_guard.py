"""The leak guard: ``FlowTestMixin`` and the pytest fixture ``flows_stopped``.

A test that leaves a flow running fails, naming it, and the flow is stopped;
a clean test passes. The fixture's cases run in a pytest subprocess
(tests/leak_cases), so their failures are looked at, not suffered.
"""

from __future__ import annotations

import subprocess
import unittest
from collections.abc import Callable

import pytest
from django.test import SimpleTestCase

from caravela_flow import Flows, flow, set_state, start, stop, wait_until
from caravela_flow.leaks import FlowGuard, leak_message, running_flows
from caravela_flow.testing import FlowTestMixin, start_probe
from tests.flowapp.flows import WorkerFlows
from tests.order_cases import run_pytest
from tests.worker_support import RedisServer, WorkerPool, worker_mode

CASES = "tests/leak_cases/cases_leaks.py"
ORDER = ("test_leaks_a_flow", "test_clean", "test_leaks_without_asking_for_the_fixture")
LAST = "test_nothing_left_running"


def never(state: dict) -> bool:
    return False


def mark(state: dict) -> dict:
    return {**state, "done": True}


class GuardFlows(Flows):
    forever = flow(wait_until(never))
    quick = flow(set_state(mark))


def run_cases(*options: str) -> subprocess.CompletedProcess[str]:
    return run_pytest(
        "-p",
        "caravela_flow.pytest_plugin",
        *options,
        *(f"{CASES}::{name}" for name in (*ORDER, LAST)),
    )


def outcomes(stdout: str) -> dict[str, list[str]]:
    """Each case's outcomes in ``-v`` lines (a teardown error adds ``ERROR`` to ``PASSED``)."""
    found: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if line.startswith(f"{CASES}::"):
            name, _, rest = line.split("::", 1)[1].partition(" ")
            word = rest.split()[0] if rest.split() else ""
            if word in ("PASSED", "FAILED", "ERROR"):
                found.setdefault(name, []).append(word)
    return found


class FlowsStoppedFixtureTests(SimpleTestCase):
    def test_a_leaking_test_errors_naming_the_flow_and_a_clean_one_passes(self) -> None:
        result = run_cases()
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        found = outcomes(result.stdout)
        self.assertEqual(found["test_leaks_a_flow"], ["PASSED", "ERROR"], output)
        self.assertEqual(found["test_clean"], ["PASSED"], output)
        # Not guarded: it passes, and its flow outlives it.
        self.assertEqual(found["test_leaks_without_asking_for_the_fixture"], ["PASSED"], output)
        self.assertEqual(found[LAST], ["FAILED"], output)
        self.assertIn(
            f"{CASES}::test_leaks_a_flow left 1 flow running (now stopped): "
            "tests.leak_cases.cases_leaks.LeakFlows.forever ",
            output,
        )
        self.assertIn("tests.leak_cases.cases_leaks.LeakFlows.forever", output)

    def test_the_ini_option_guards_every_test(self) -> None:
        result = run_cases("-o", "caravela_flow_stop_flows=true")
        output = result.stdout + result.stderr
        found = outcomes(result.stdout)
        self.assertEqual(found["test_leaks_a_flow"], ["PASSED", "ERROR"], output)
        self.assertEqual(found["test_clean"], ["PASSED"], output)
        self.assertEqual(
            found["test_leaks_without_asking_for_the_fixture"], ["PASSED", "ERROR"], output
        )
        self.assertIn("(key 'unguarded')", output)
        # Every leaked flow was stopped: nothing is running in the last test.
        self.assertEqual(found[LAST], ["PASSED"], output)


class FlowTestMixinTests(SimpleTestCase):
    def run_case(self, case: type[unittest.TestCase]) -> unittest.TestResult:
        result = unittest.TestResult()
        unittest.defaultTestLoader.loadTestsFromTestCase(case).run(result)
        return result

    def test_a_leaking_test_fails_naming_the_flow_and_the_flow_is_stopped(self) -> None:
        started: list[str] = []

        class Leaky(FlowTestMixin, unittest.TestCase):
            def test_leaks(self) -> None:
                started.append(start(GuardFlows, "forever", key="mixin").id)

        result = self.run_case(Leaky)

        self.assertEqual((result.testsRun, len(result.errors)), (1, 0), result.errors)
        self.assertEqual(len(result.failures), 1)
        message = result.failures[0][1]
        self.assertIn("Leaky.test_leaks left 1 flow running (now stopped): ", message)
        self.assertIn(
            f"tests.test_leak_guard.GuardFlows.forever {started[0]} (key 'mixin')", message
        )
        self.assertNotIn(started[0], [info.id for info in running_flows()])

    def test_a_clean_test_passes(self) -> None:
        class Clean(FlowTestMixin, unittest.TestCase):
            def test_waits_for_its_flow(self) -> None:
                probe = start_probe(GuardFlows, "quick")
                probe.wait_end(timeout=30)

            def test_stops_its_flow(self) -> None:
                stop(start(GuardFlows, "forever"))

        result = self.run_case(Clean)

        self.assertEqual(result.testsRun, 2)
        self.assertTrue(result.wasSuccessful(), result.failures + result.errors)

    def test_flows_running_before_the_test_are_left_alone(self) -> None:
        earlier = start(GuardFlows, "forever")
        self.addCleanup(stop, earlier)

        class Clean(FlowTestMixin, unittest.TestCase):
            def test_nothing(self) -> None:
                pass

        self.assertTrue(self.run_case(Clean).wasSuccessful())
        self.assertIn(earlier.id, [info.id for info in running_flows()])

    def test_a_setup_of_its_own_calling_super_is_guarded(self) -> None:
        class WithSetUp(FlowTestMixin, unittest.TestCase):
            def setUp(self) -> None:
                super().setUp()
                self.flow = start(GuardFlows, "forever")

            def test_leaks_from_setup(self) -> None:
                pass

        result = self.run_case(WithSetUp)
        self.assertEqual(len(result.failures), 1, result.errors)
        self.assertIn("GuardFlows.forever", result.failures[0][1])


class LeakMessageTests(SimpleTestCase):
    def test_no_leak_means_an_empty_list(self) -> None:
        guard = FlowGuard()
        self.assertEqual(guard.stop_leaked(), [])

    def test_the_message_counts_and_names_the_flows(self) -> None:
        guard = FlowGuard()
        first = start(GuardFlows, "forever")
        second = start(GuardFlows, "forever", key="b")
        leaked = guard.stop_leaked()
        message = leak_message("test_x", leaked)
        self.assertTrue(message.startswith("test_x left 2 flows running (now stopped): "), message)
        self.assertIn(first.id, message)
        self.assertIn(f"{second.id} (key 'b')", message)


@pytest.mark.worker
def test_worker_mode_a_leaked_flow_on_a_worker_fails_the_test_and_is_stopped(
    redis_server: RedisServer, make_pool: Callable[[], WorkerPool]
) -> None:
    pool = make_pool()
    pool.spawn(1)
    started: list[str] = []

    class Leaky(FlowTestMixin, unittest.TestCase):
        def test_leaks(self) -> None:
            started.append(start(WorkerFlows, "hold", key="worker-leak").id)

        def test_clean(self) -> None:
            stop(start(WorkerFlows, "hold"))

    with worker_mode(redis_server.url, pool.prefix):
        result = unittest.TestResult()
        unittest.defaultTestLoader.loadTestsFromTestCase(Leaky).run(result)
        assert (result.testsRun, result.errors) == (2, [])
        assert [test.id().rsplit(".", 1)[-1] for test, _ in result.failures] == ["test_leaks"]
        assert (
            f"tests.flowapp.flows.WorkerFlows.hold {started[0]} (key 'worker-leak')"
            in result.failures[0][1]
        )
        assert started[0] not in [info.id for info in running_flows()]
