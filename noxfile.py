"""The version matrix: caravela_flow against the oldest and newest releases its bounds admit.

Each session installs the package (``.[daphne,redis,testing]``) with one set of
exact pins for Django, asgiref, Channels, channels-redis, daphne and redis-py,
then runs a fast subset of the suite: every test that needs no browser and no
worker processes, plus ``tests/test_worker_mode.py`` (real ``runworker``
processes over a private ``redis-server``). The browser and fault-injection
suites run once, against ``requirements.txt``, in ``make test``.

    nox                     # every session (make matrix)
    nox -s "matrix(newest, redis 8)"
    nox -l                  # list the sessions

The pins below are the bounds of ``pyproject.toml`` at the time of writing:
when a bound moves or a newer release comes out, update them together.
"""

from __future__ import annotations

import re
from pathlib import Path

import nox

ROOT = Path(__file__).parent

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"

# The oldest and the newest release that pyproject.toml's bounds admit.
STACKS = {
    "oldest": {
        "Django": "5.2",
        "asgiref": "3.9.1",
        "channels": "4.3.0",
        "channels-redis": "4.3.0",
        "daphne": "4.2.0",
    },
    "newest": {
        "Django": "5.2.19",
        "asgiref": "3.13.0",
        "channels": "4.3.2",
        "channels-redis": "4.3.0",
        "daphne": "4.2.3",
    },
}
# redis-py: both majors the [redis] extra admits, oldest and newest of each.
REDIS = {
    ("oldest", "7"): "7.0.0",
    ("oldest", "8"): "8.0.0",
    ("newest", "7"): "7.4.1",
    ("newest", "8"): "8.2.0",
}

# Test tools and the demo site's own dependencies, at requirements.txt's pins.
TEST_TOOLS = (
    "pytest",
    "pytest-asyncio",
    "pytest-django",
    "pytest-timeout",
    "looptime",
    "websockets",
    "hypothesis",
    "dj-database-url",
    "psycopg[binary]",
    "django-vite",
)

# No browser (Playwright) and no long fault injection; worker mode's own suite stays in.
PYTEST_ARGS = (
    "-m",
    "not worker",
    "--ignore=tests/test_ui.py",
    "--ignore=tests/test_ui_worker.py",
    "tests",
)
WORKER_SMOKE = ("tests/test_worker_mode.py",)


def pinned(names: tuple[str, ...]) -> list[str]:
    """The ``name==version`` lines of requirements.txt for these names."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower()] = line.strip()
    missing = [name for name in names if name.lower() not in pins]
    if missing:
        raise RuntimeError(f"requirements.txt pins none of {missing}")
    return [pins[name.lower()] for name in names]


@nox.session(python=PYTHON)
@nox.parametrize(
    "stack,redis_major",
    [
        nox.param(stack, major, id=f"{stack}, redis {major}")
        for stack in ("oldest", "newest")
        for major in ("7", "8")
    ],
)
def matrix(session: nox.Session, stack: str, redis_major: str) -> None:
    """Unit tests and the worker-mode suite against one stack of pinned releases."""
    pins = [f"{name}=={version}" for name, version in STACKS[stack].items()]
    pins.append(f"redis=={REDIS[stack, redis_major]}")
    session.install(".[daphne,redis,testing]", *pins, *pinned(TEST_TOOLS))
    session.run("python", "-m", "pip", "check")
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *PYTEST_ARGS, env=env)
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *WORKER_SMOKE, env=env)
