"""A URLconf with sync views that drive flows, for tests that serve them over ASGI.

Used with ``override_settings(ROOT_URLCONF="tests.urls_sync_view")``.
"""

from __future__ import annotations

import threading

from django.http import HttpRequest, JsonResponse
from django.urls import path

import caravela_flow
from caravela_flow import Flows, flow, wait_until


def is_done(state: dict) -> bool:
    return bool(state.get("done"))


class ViewFlows(Flows):
    idle = flow(wait_until(is_done), initial_state={"done": False, "via": None})


def start_view(request: HttpRequest) -> JsonResponse:
    handle = caravela_flow.start(ViewFlows, "idle", {"via": "sync view"})
    return JsonResponse({"id": handle.id, "thread": threading.get_ident()})


def signal_view(request: HttpRequest, flow_id: str) -> JsonResponse:
    caravela_flow.signal(flow_id, {"done": request.GET.get("done") == "1", "seen": True})
    return JsonResponse({"state": caravela_flow.get_state(flow_id)})


def stop_view(request: HttpRequest, flow_id: str) -> JsonResponse:
    caravela_flow.stop(flow_id)
    return JsonResponse({"state": caravela_flow.get_state(flow_id)})


urlpatterns = [
    path("start/", start_view),
    path("signal/<str:flow_id>/", signal_view),
    path("stop/<str:flow_id>/", stop_view),
]
