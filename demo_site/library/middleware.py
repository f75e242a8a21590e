"""A page that says what to run, instead of a 500, when flows cannot be reached."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from caravela_flow import FlowError, NoWorkerAvailable
from caravela_flow.conf import get_settings

logger = logging.getLogger(__name__)


class FlowErrorPageMiddleware:
    """Answers 503 with what to do when a view's flow call raised a ``FlowError``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, FlowError):
            return None
        logger.warning("%s %s: %s", request.method, request.path, exception)
        worker_mode = get_settings().MODE == "worker"
        no_worker = isinstance(exception, NoWorkerAvailable) or worker_mode
        context = {
            "error": exception,
            "kind": type(exception).__name__,
            "worker_mode": worker_mode,
            "no_worker": no_worker,
        }
        if request.headers.get("Accept") == "application/json":
            message = (
                "No flow worker answered: start one with `python manage.py runworker "
                "caravela-flows` (or `make demo-workers`)."
                if no_worker
                else f"The flow could not be reached: {exception}"
            )
            return JsonResponse({"error": message, "kind": context["kind"]}, status=503)
        return render(request, "library/flows_unavailable.html", context, status=503)
