"""The version matrix: caravela_flow against the oldest and newest releases its bounds admit.

Each session installs the package (``.[daphne,redis,testing]``) with one set of
exact pins for Django, asgiref, Channels, channels-redis, daphne and redis-py,
then runs a fast subset of the suite: every test that needs no browser and no
worker processes, plus ``tests/test_worker_mode.py`` (real ``runworker``
processes over a private ``redis-server``). The browser and fault-injection
suites run once, against ``requirements.txt``, in ``make test``.

    nox                     # every session (make matrix)
    nox -s "matrix(newest, redis 8)"
    nox -s install          # build the sdist and wheel, check them, follow the README's install
    nox -l                  # list the sessions

The pins below are the bounds of ``pyproject.toml`` at the time of writing:
when a bound moves or a newer release comes out, update them together.
"""

from __future__ import annotations

import re
import shutil
import tarfile
import zipfile
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

# No browser (Playwright), no long fault injection, and no typing test (mypy checks
# the source, whichever releases are installed); worker mode's own suite stays in.
PYTEST_ARGS = (
    "-m",
    "not worker",
    "--ignore=tests/test_ui.py",
    "--ignore=tests/test_ui_worker.py",
    "--ignore=tests/test_typing.py",
    "tests",
)
WORKER_SMOKE = ("tests/test_worker_mode.py",)


def requirement_pins(path: Path) -> dict[str, str]:
    """``name`` → ``name==version`` for each exact pin of a requirements file (and its ``-r``)."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(requirement_pins(path.parent / line[3:].strip()))
        elif match := re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line):
            pins[match.group(1).lower()] = line
    return pins


def pinned(names: tuple[str, ...]) -> list[str]:
    """The ``name==version`` lines of requirements.txt (and its ``-r`` files) for these names."""
    pins = requirement_pins(ROOT / "requirements.txt")
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


# What the sdist must hold, and what it must not: the tests need the demo site,
# Redis, Chromium and node, which only the repository has (see MANIFEST.in).
SDIST_MUST_HOLD = (
    "LICENSE",
    "README.md",
    "CHANGELOG.md",
    "pyproject.toml",
    "caravela_flow/__init__.py",
    "caravela_flow/py.typed",
    "caravela_flow/static/caravela_flow/client.js",
    "docs/index.md",
    "docs/conf.py",
)
SDIST_MUST_NOT_HOLD = ("tests/", "demo_site/", "templates/", "node_modules/", "docs/_build/")


def check_sdist(sdist: Path) -> None:
    """Fail unless the sdist ships the app, its licence and docs, and no tests."""
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        names = {name.removeprefix(f"{top}/") for name in archive.getnames()}
    missing = [name for name in SDIST_MUST_HOLD if name not in names]
    shipped = sorted(n for n in names if n.startswith(SDIST_MUST_NOT_HOLD) or "__pycache__" in n)
    if missing or shipped:
        raise RuntimeError(f"{sdist.name}: missing {missing}, must not ship {shipped}")


def check_wheel(wheel: Path) -> None:
    """Fail unless the wheel holds only the package (with its static files) and its metadata."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    stray = [n for n in names if not n.startswith(("caravela_flow/", "caravela_flow-"))]
    if stray or "caravela_flow/static/caravela_flow/client.js" not in names:
        raise RuntimeError(f"{wheel.name}: stray files {stray}, or no static files")


@nox.session(python=PYTHON)
def install(session: nox.Session) -> None:
    """Build the sdist and the wheel, check what they hold, and follow the README's installation."""
    session.install(*pinned(("build", "websockets")))
    tmp = Path(session.create_tmp()).resolve()
    dist, project = tmp / "dist", tmp / "readme-install"
    for old in (dist, project):
        shutil.rmtree(old, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT))
    (sdist,) = dist.glob("caravela_flow-*.tar.gz")
    (wheel,) = dist.glob("caravela_flow-*.whl")
    check_sdist(sdist)
    check_wheel(wheel)
    session.log(f"{sdist.name} and {wheel.name}: contents as expected")
    session.run("python", "tests/packaging/readme_install.py", str(wheel), str(project))
