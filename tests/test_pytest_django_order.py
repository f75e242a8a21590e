"""Flows pass under pytest-django in any order of ``django_db`` and other tests.

A sync step function runs in one of caravela_flow's threads; one that never
uses the database must not touch it, even when an earlier ``django_db`` test
left that thread's (in-memory SQLite) connection open. The cases live in
tests/order_cases and run in a pytest subprocess, once in each order.
"""

from __future__ import annotations

import subprocess

from django.test import SimpleTestCase

from tests.order_cases import run_pytest

CASES = "tests/order_cases/cases_db_order.py"
DB_TEST = "test_a_flow_that_uses_the_database"
PLAIN_TEST = "test_a_flow_that_never_touches_the_database"


def run_in_order(*names: str) -> subprocess.CompletedProcess[str]:
    return run_pytest(
        *(f"{CASES}::{name}" for name in names), settings="tests.order_cases.settings"
    )


class PytestDjangoOrderTests(SimpleTestCase):
    def assert_passed_in_order(self, *names: str) -> None:
        result = run_in_order(*names)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output)
        passed = [
            line.split("::", 1)[1].split()[0]
            for line in result.stdout.splitlines()
            if line.startswith(CASES) and " PASSED" in line
        ]
        self.assertEqual(passed, list(names), output)

    def test_a_django_db_test_then_a_flow_that_never_uses_the_database(self) -> None:
        self.assert_passed_in_order(DB_TEST, PLAIN_TEST)

    def test_a_flow_that_never_uses_the_database_then_a_django_db_test(self) -> None:
        self.assert_passed_in_order(PLAIN_TEST, DB_TEST)
