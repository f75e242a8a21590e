"""The operations surface behind ``manage.py flows``: list, inspect and stop flows.

Works in both modes through the configured backend. In worker mode a list
asks every worker (the ``caravela.list`` message, to the workers group) and
waits until each worker holding a lease has answered; ``inspect`` and
``stop`` reach the flow's worker through the directory, by id alone. In
local mode flows live in the process that started them, so a management
command sees only the flows of its own process.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from dataclasses import dataclass
from typing import Any

from .api import backend, stop
from .conf import get_settings
from .definition import words
from .errors import FlowNotFound, FlowUnreachable, NoWorkerAvailable
from .handle import flow_id_of
from .registry import registry
from .supervisor import FlowInfo

#: What a list in local mode says about what it can see.
LOCAL_SCOPE = (
    "local mode: only the flows of this process are listed (flows run in the process "
    "that started them, so another process's flows are not visible here; in worker mode "
    "every worker's flows are)"
)


def flow_title(definition_key: str) -> str:
    """A flow's name in words, as dashboards show it: its ``verbose_name``."""
    if definition_key in registry:
        return registry.get(definition_key).verbose_name
    return words(definition_key.rsplit(".", 1)[-1])


def worker_hint() -> str:
    """What to run when no worker answers."""
    conf = get_settings()
    return (
        f"is `python manage.py runworker {conf.WORKER_CHANNEL}` running, "
        f"with the same CHANNEL_LAYERS[{conf.CHANNEL_LAYER!r}] as this process?"
    )


@dataclass(frozen=True)
class Listing:
    """The flows found, as rows, and how complete the look was."""

    mode: str
    rows: list[dict[str, Any]]
    #: Worker mode: workers that answered, and workers with a lease that did not.
    answered: int
    silent: int

    @property
    def scope(self) -> str:
        """One sentence on what the listing covers."""
        if self.mode == "local":
            return LOCAL_SCOPE
        text = f"worker mode: the flows of every worker ({self.answered} answered"
        if self.silent:
            text += f"; {self.silent} holding a lease did not answer, their flows are missing"
        return text + ")"


def describe(info: FlowInfo, now: float | None = None) -> dict[str, Any]:
    """One flow as a row: its info, its name in words and its age in seconds."""
    now = time.time() if now is None else now
    row = dataclasses.asdict(info)
    row["name"] = flow_title(info.flow)
    started = info.started_at
    row["age_seconds"] = None if started is None else round(max(0.0, now - started), 3)
    row["started_at"] = None if started is None else iso(started)
    return row


def iso(when: float) -> str:
    """A ``time.time()`` value as an ISO 8601 UTC timestamp."""
    return datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(timespec="seconds")


def listing(timeout: float) -> Listing:
    """Every flow this command can see; worker mode waits up to ``timeout`` s for workers.

    Raises :class:`NoWorkerAvailable` when no worker answers.
    """
    mode = get_settings().MODE
    survey = backend().survey(timeout)
    if mode == "worker" and not survey.answered:
        if survey.silent:
            raise NoWorkerAvailable(
                f"{survey.silent} worker(s) hold a lease but none answered within "
                f"{timeout:g} s (busy, paused or cut off from Redis?); try a longer --timeout"
            )
        raise NoWorkerAvailable(f"no worker answered within {timeout:g} s; {worker_hint()}")
    now = time.time()
    infos = sorted(
        survey.flows, key=lambda i: (i.status != "running", -(i.started_at or 0.0), i.id)
    )
    return Listing(mode, [describe(info, now) for info in infos], survey.answered, survey.silent)


def inspect(handle: Any) -> dict[str, Any]:
    """One flow's details and current state (running, or finished and still retained)."""
    flow_id = flow_id_of(handle)
    details = backend().inspect(flow_id)
    started = details.get("started_at")
    if isinstance(started, (int, float)):
        details["age_seconds"] = round(max(0.0, time.time() - started), 3)
        details["started_at"] = iso(started)
    return {"name": flow_title(str(details.get("flow", ""))), **details}


@dataclass(frozen=True)
class Stopped:
    """What ``stop_flow`` did."""

    flow_id: str
    #: False when the flow had already ended.
    stopped: bool
    #: Its status afterwards ("stopped", or how it had ended); None once no longer retained.
    status: str | None
    name: str


def stop_flow(handle: Any) -> Stopped:
    """Stop a running flow; a flow that has already ended is reported, not an error.

    An id no process knows raises :class:`FlowNotFound`.
    """
    flow_id = flow_id_of(handle)
    before = inspect(flow_id)
    name = before["name"]
    if before.get("status") != "running":
        return Stopped(flow_id, False, before.get("status"), name)
    try:
        stop(flow_id)
    except FlowUnreachable:
        raise
    except FlowNotFound:
        stopped = False  # it ended meanwhile
    else:
        stopped = True
    try:
        status = inspect(flow_id).get("status")
    except FlowUnreachable:
        raise
    except FlowNotFound:
        status = None
    return Stopped(flow_id, stopped, status, name)
