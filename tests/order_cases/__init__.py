"""Test modules for a pytest run in a subprocess, their cases run in the order given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def run_pytest(*args: str, settings: str | None = None) -> subprocess.CompletedProcess[str]:
    """``pytest -v`` on ``args`` (options, then node ids) in a subprocess at the repository root.

    The node ids run in the order given (``tests.order_cases.keep_order``).
    ``settings``, if given, replaces the ``DJANGO_SETTINGS_MODULE`` of this process.
    """
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:randomly", "-p", "no:cacheprovider"]
    command += ["-p", "tests.order_cases.keep_order", "-o", "python_files=cases_*.py"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if settings is not None:
        env.pop("DJANGO_SETTINGS_MODULE", None)
        command += ["--ds", settings]
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
