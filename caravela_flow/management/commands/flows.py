"""``manage.py flows list|inspect ID|stop ID``: see and stop the deployment's flows.

In worker mode it reaches every ``runworker`` sharing the channel layer. In
local mode flows live in the process that started them, so this command
(a process of its own) sees only flows it started itself; it says so.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from caravela_flow import operations
from caravela_flow.conf import get_settings
from caravela_flow.errors import FlowError, FlowNotFound, FlowUnreachable, NoWorkerAvailable
from caravela_flow.handle import is_flow_id

#: Longest key or step shown in the table (``--json`` shows them whole).
CELL = 40


class Command(BaseCommand):
    help = (
        "List, inspect and stop caravela_flow flows. In worker mode it sees the flows of "
        "every runworker sharing the channel layer. In local mode flows live in the process "
        "that started them, so this command sees only flows started in its own process "
        "(none, when run from a shell)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="{list,inspect,stop}")
        actions.required = True
        listing = actions.add_parser(
            "list",
            help="a table of the flows (running and recently finished)",
            description="List the flows: in worker mode every worker's, in local mode only "
            "this process's.",
        )
        listing.add_argument("--json", action="store_true", help="print JSON instead")
        listing.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="worker mode: seconds to wait for the workers to answer "
            "(default: REQUEST_TIMEOUT)",
        )
        inspect = actions.add_parser("inspect", help="a flow's details and current state (JSON)")
        inspect.add_argument("flow_id", help="the flow's id (32 hex digits)")
        stop = actions.add_parser("stop", help="stop a running flow")
        stop.add_argument("flow_id", help="the flow's id (32 hex digits)")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "list":
                self._list(options["json"], options["timeout"])
            elif action == "inspect":
                self._inspect(_checked_id(options["flow_id"]))
            else:
                self._stop(_checked_id(options["flow_id"]))
        except FlowUnreachable as exc:
            raise CommandError(f"{exc}; {_hint(str(exc))}") from None
        except NoWorkerAvailable as exc:
            raise CommandError(str(exc)) from None
        except FlowNotFound as exc:
            raise CommandError(_not_found(str(exc))) from None
        except FlowError as exc:
            raise CommandError(str(exc)) from None

    # -- list -------------------------------------------------------------------

    def _list(self, as_json: bool, timeout: float | None) -> None:
        if timeout is None:
            timeout = get_settings().REQUEST_TIMEOUT
        if timeout <= 0:
            raise CommandError(f"--timeout must be a number of seconds > 0, got {timeout:g}")
        found = operations.listing(timeout)
        if as_json:
            data = {
                "mode": found.mode,
                "scope": found.scope,
                "workers_answered": found.answered,
                "workers_silent": found.silent,
                "flows": found.rows,
            }
            self.stdout.write(json.dumps(data, indent=2, cls=DjangoJSONEncoder))
            return
        scope = found.scope[:1].upper() + found.scope[1:] + "."
        if found.silent:
            self.stderr.write(self.style.WARNING(scope))
        else:
            self.stdout.write(scope)
        if not found.rows:
            self.stdout.write("No flows." if found.mode == "worker" else "No flows here.")
            return
        self.stdout.write(table(found.rows, worker=found.mode == "worker"))
        running = sum(1 for row in found.rows if row["status"] == "running")
        self.stdout.write(f"{len(found.rows)} flow(s), {running} running.")

    # -- inspect and stop -------------------------------------------------------

    def _inspect(self, flow_id: str) -> None:
        details = operations.inspect(flow_id)
        self.stdout.write(json.dumps(details, indent=2, cls=DjangoJSONEncoder))

    def _stop(self, flow_id: str) -> None:
        outcome = operations.stop_flow(flow_id)
        what = f"flow {flow_id} ({outcome.name})"
        if outcome.stopped:
            self.stdout.write(self.style.SUCCESS(f"Stopped {what}; it is {outcome.status}."))
        elif outcome.status is None:
            self.stdout.write(f"{what[:1].upper()}{what[1:]} had already ended.")
        else:
            self.stdout.write(
                f"{what[:1].upper()}{what[1:]} had already ended ({outcome.status}); "
                "nothing to stop."
            )


def _checked_id(value: str) -> str:
    if not is_flow_id(value):
        raise CommandError(f"{value!r:.80} is not a flow id (32 lowercase hex digits)")
    return value


def _hint(message: str) -> str:
    if "cannot reach Redis" in message:
        alias = get_settings().CHANNEL_LAYER
        return f"is Redis up, and are CHANNEL_LAYERS[{alias!r}]'s hosts right?"
    return operations.worker_hint()


def _not_found(message: str) -> str:
    if get_settings().MODE == "local":
        return (
            f"{message}. In local mode this command sees only flows started in its own "
            "process; flows of a web server or another process are not reachable from here"
        )
    return message


def _cut(value: Any, width: int = CELL) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def age(seconds: float | None) -> str:
    """A short, readable age: ``"42 s"``, ``"5 min"``, ``"3 h 12 min"``, ``"2 d 4 h"``."""
    if seconds is None:
        return "?"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if whole < 3600:
        return f"{minutes} min"
    if whole < 86400:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def table(rows: list[dict[str, Any]], *, worker: bool) -> str:
    """The rows as an aligned text table."""
    header = ["ID", "FLOW", "KEY", "STATUS", "STEP", "RESTARTS", "AGE"]
    if worker:
        header.append("WORKER")
    lines = [header]
    for row in rows:
        cells = [
            row["id"],
            _cut(row["name"]),
            _cut(row["key"]) or "-",
            row["status"],
            _cut(row["step"]) or "-",
            str(row["restarts"]),
            age(row["age_seconds"]),
        ]
        if worker:
            cells.append(f"{row['host']}:{row['pid']}" if row.get("host") else "?")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
