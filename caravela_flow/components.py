"""Live components: the mount point ``{% flow_component "Name" handle %}`` renders.

The mount point holds the flow's current snapshot (so the first paint shows
the real state) and the subscription URL for the request's user; the shipped
``caravela_flow/svelte_mount.svelte.js`` mounts the Svelte component there and
keeps its props current.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString

from .api import backend
from .conf import get_settings
from .errors import FlowError, FlowNotFound
from .handle import FlowHandle, flow_id_of
from .loops import background_loop, running_loop
from .supervisor import Snapshot, supervisor
from .tokens import subscription_url

logger = logging.getLogger(__name__)

COMPONENT_NAME = re.compile(r"^[A-Za-z_$][\w$]*$")


def flow_snapshot(handle: FlowHandle | str) -> Snapshot:
    """The flow's status, version and state, for sync code (a view, a template)."""
    flow_id = flow_id_of(handle)
    if get_settings().MODE != "worker":
        # What LocalBackend.asnapshot does: the runner replaces its state, never edits it.
        return supervisor.snapshot(flow_id)
    loop = background_loop()
    if running_loop() is loop:
        raise RuntimeError("flow_snapshot() cannot run on caravela_flow's own loop")
    return asyncio.run_coroutine_threadsafe(backend().asnapshot(flow_id), loop).result()


def _snapshot_or_none(handle: FlowHandle | str) -> dict[str, Any] | None:
    try:
        snapshot = flow_snapshot(handle)
    except FlowNotFound:
        return None
    except FlowError as exc:
        logger.info("flow %s: no snapshot for its component (%s)", handle, exc)
        return None
    return {
        "flow_id": snapshot.flow_id,
        "status": snapshot.status,
        "version": snapshot.version,
        "state": snapshot.state,
        "reason": snapshot.reason,
    }


def flow_component_html(
    name: str, handle: FlowHandle | str, user: Any = None, props: dict[str, Any] | None = None
) -> SafeString:
    """The mount point of Svelte component ``name`` following the flow ``handle`` for ``user``.

    ``props`` are extra props, passed as they are (JSON values). A flow that is
    gone renders with no snapshot; the component then hears it from the socket.
    """
    if not isinstance(name, str) or not COMPONENT_NAME.match(name):
        raise ValueError(f"flow_component: {name!r:.80} is not a component name")
    data = {
        "url": subscription_url(handle, user),
        "snapshot": _snapshot_or_none(handle),
        "props": props or {},
    }
    return format_html(
        '<div class="caravela-flow-component" data-caravela-flow-component="{}" '
        'data-flow-id="{}">{}</div>',
        name,
        flow_id_of(handle),
        json_script(data),
    )
