"""Follow the README's *Installation* steps literally, from a built wheel.

A script, not a test (it installs packages): ``nox -s install`` runs it.

    python tests/packaging/readme_install.py dist/caravela_flow-*.whl /tmp/somewhere

It makes a venv, installs ``<wheel>[daphne,redis]``, runs ``django-admin
startproject mysite``, pastes the README's code blocks into ``settings.py``
and ``asgi.py``, adds an app with one flow and a view that starts it, then
checks, migrates, serves with ``runserver`` and subscribes over a WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
PORT = 8765

FLOWS = """
from caravela_flow import Flows, flow, set_state, wait_until

class Counter(Flows):
    count = flow(
        wait_until(lambda s: s["go"]),
        set_state(lambda s: {**s, "count": s["count"] + 1}),
        initial_state={"count": 0, "go": False},
    )
"""

VIEWS = """
from django.http import HttpResponse
from django.template import engines

from caravela_flow import start

from .flows import Counter

TAG = "{% load caravela_flow %}{% flow_subscription_url handle %}"

def home(request):
    handle = start(Counter, "count")
    return HttpResponse(engines["django"].from_string(TAG).render({"handle": handle}, request))
"""


def sh(*cmd: object, **kwargs: object) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)  # type: ignore[call-overload]


def readme_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Installation\n") : text.index("## The DSL\n")]
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", section, re.S)]


async def first_frame(path: str) -> dict[str, object]:
    import websockets  # the repository's venv has it; the project's does not need it

    url = f"ws://127.0.0.1:{PORT}{path}"
    async with websockets.connect(url, origin=f"http://127.0.0.1:{PORT}") as ws:  # type: ignore[arg-type]
        frame: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), 5))
        return frame


def main(wheel: str, root: Path) -> None:
    installed_apps, asgi_py, settings_extra, _static_dirs = readme_blocks()
    root.mkdir(parents=True, exist_ok=True)
    venv, proj = root / "venv", root / "proj"
    sh(sys.executable, "-m", "venv", venv)
    py = venv / "bin" / "python"
    sh(py, "-m", "pip", "install", "-q", f"{wheel}[daphne,redis]")
    proj.mkdir()
    sh(venv / "bin" / "django-admin", "startproject", "mysite", proj)

    settings = proj / "mysite" / "settings.py"
    apps = installed_apps.replace('# "yourapp",', '"demoapp",  #')
    text = re.sub(r"INSTALLED_APPS = \[.*?\]\n", apps, settings.read_text(), flags=re.S)
    settings.write_text(text + "\n" + settings_extra)
    (proj / "mysite" / "asgi.py").write_text(asgi_py)
    app = proj / "demoapp"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "flows.py").write_text(FLOWS)
    (app / "views.py").write_text(VIEWS)
    urls = proj / "mysite" / "urls.py"
    route = "from demoapp.views import home\n\nurlpatterns = [\n    path('', home),"
    urls.write_text(urls.read_text().replace("urlpatterns = [", route))

    sh(py, "manage.py", "check", "--fail-level", "WARNING", cwd=proj)
    sh(py, "manage.py", "migrate", "-v0", cwd=proj)
    log_path = root / "runserver.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [py, "manage.py", "runserver", "--noreload", f"127.0.0.1:{PORT}"],
            cwd=proj,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            path = ""
            for _ in range(100):
                try:
                    path = urllib.request.urlopen(f"http://127.0.0.1:{PORT}/").read().decode()
                    break
                except OSError:
                    time.sleep(0.2)
            frame = asyncio.run(first_frame(path))
            print("first frame:", frame)
            assert frame["event"] == "snapshot", frame
        finally:
            server.terminate()
            server.wait()
    served = log_path.read_text()
    print(served[-800:])
    assert "Starting ASGI/Daphne" in served, "runserver is not daphne's"
    print("README installation: OK")


if __name__ == "__main__":
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    main(sys.argv[1], Path(sys.argv[2]))
