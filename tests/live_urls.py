"""A URLconf for the live-server tests: sync views that start and signal a flow.

The live server is daphne in a child process; with the in-memory channel
layer only what is published inside that process reaches its sockets, so
the tests drive flows through these views. Used with
``override_settings(ROOT_URLCONF="tests.live_urls")``.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

import caravela_flow
from caravela_flow import Flows, Ok, flow, run, set_state, wait_until


def go(state: dict) -> bool:
    return bool(state["go"])


def mark_synced(state: dict) -> Ok:
    # Sync, so it runs in caravela_flow's thread pool inside the server process.
    return Ok({**state, "synced": True})


def finish(state: dict) -> dict:
    return {**state, "finished": True}


class LiveFlows(Flows):
    counter = flow(
        wait_until(go),
        run(mark_synced),
        set_state(finish),
        initial_state={"go": False, "n": 0, "synced": False, "finished": False},
    )


def start_view(request: HttpRequest) -> JsonResponse:
    handle = caravela_flow.start(LiveFlows, "counter")
    return JsonResponse(
        {"flow_id": handle.id, "ws_url": caravela_flow.subscription_url(handle, request.user)}
    )


def signal_view(request: HttpRequest, flow_id: str) -> JsonResponse:
    update: dict = {}
    if "n" in request.GET:
        update["n"] = int(request.GET["n"])
    if request.GET.get("go") == "1":
        update["go"] = True
    caravela_flow.signal(flow_id, update)
    return JsonResponse({"state": caravela_flow.get_state(flow_id)})


urlpatterns = [
    path("live/start/", start_view),
    path("live/signal/<str:flow_id>/", signal_view),
]
