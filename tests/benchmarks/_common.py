"""Shared plumbing of the benchmark scripts: Django setup, RSS, tables, verdicts.

Importing this module puts the repository root on ``sys.path`` and calls
``django.setup()`` with ``demo_site.settings`` (unless ``DJANGO_SETTINGS_MODULE``
says otherwise), so a script can then import ``caravela_flow`` at top level.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

import django  # noqa: E402 - needs the path and settings module set above

django.setup()

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident set size of this process, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    return time.process_time()


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark has."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--quick", action="store_true", help="small sizes for a smoke run (seconds, not minutes)"
    )
    result.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    return result


def banner(title: str) -> None:
    """Print what is measured, where and when."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    print(f"== {title}")
    with open("/proc/loadavg") as loadavg:
        load = " ".join(loadavg.read().split()[:3])
    print(
        f"   {now} · Python {platform.python_version()} · {platform.machine()} · "
        f"{os.cpu_count()} CPUs · load average {load} · "
        f"settings {os.environ['DJANGO_SETTINGS_MODULE']}"
    )
    print(f"   caravela_flow at {engine_revision()}")
    print()


def engine_revision() -> str:
    """The commit the engine was measured at, and whether it had local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "caravela_flow"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "(unknown revision)"
    return f"{head or '(unknown)'}{' + uncommitted changes' if changed else ''}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; numbers are right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    numeric = [
        all(isinstance(row[i], (int, float)) for row in rows if row[i] is not None)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 to 100) of sorted values, linearly interpolated."""
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def exit_status(passed: bool, strict: bool) -> int:
    """0 unless ``--strict`` and a target was missed: these scripts are reports."""
    return 1 if strict and not passed else 0
