"""``make demo-workers``: the demo in worker mode on this machine.

Starts a private redis-server (no persistence, on a free port), two
``runworker caravela-flows`` processes and daphne (with static files) on
127.0.0.1:PORT, all sharing that Redis; Ctrl-C (or SIGTERM) stops them all.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {seconds:g} s")


def main() -> int:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("redis-server is missing: `make deps-system` installs it.", file=sys.stderr)
        return 1
    port = int(os.environ.get("PORT", "8000"))
    redis_port = free_port()
    python = sys.executable
    env = dict(
        os.environ,
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        CARAVELA_FLOW_MODE="worker",
        DJANGO_SETTINGS_MODULE="demo_site.settings",
        PYTHONUNBUFFERED="1",
    )
    children: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str) -> None:
        # Own sessions: Ctrl-C reaches only this script, which stops each child gracefully.
        children.append(subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True))

    def stop_all(*_: object) -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix="caravela-demo-redis-") as data:
        try:
            spawn(
                redis_server,
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                data,
                "--loglevel",
                "warning",
            )
            wait_for_port(redis_port)
            for _ in range(WORKERS):
                spawn(python, "manage.py", "runworker", "caravela-flows")
            spawn(
                python,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "demo_site.asgi_static:application",
            )
            wait_for_port(port)
            print(
                f"\nWorker mode: Redis on {redis_port}, {WORKERS} workers, "
                f"http://127.0.0.1:{port}/  (Ctrl-C stops everything)\n",
                flush=True,
            )
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            print("A process exited; stopping the others.", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            stop_all()


if __name__ == "__main__":
    sys.exit(main())
