"""Flows pass under pytest-django in any order of ``django_db`` and other tests.

A sync step function runs in one of caravela_flow's threads; one that never
uses the database must not touch it, even when an earlier ``django_db`` test
left that thread's (in-memory SQLite) connection open. The cases live in
tests/order_cases and run in a pytest subprocess, once in each order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.test import SimpleTestCase

ROOT = Path(__file__).resolve().parent.parent
CASES = "tests/order_cases/cases_db_order.py"
DB_TEST = "test_a_flow_that_uses_the_database"
PLAIN_TEST = "test_a_flow_that_never_touches_the_database"


def run_in_order(*names: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-v",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        "-p",
        "tests.order_cases.keep_order",
        "--ds",
        "tests.order_cases.settings",
        "-o",
        "python_files=cases_*.py",
        *(f"{CASES}::{name}" for name in names),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
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
