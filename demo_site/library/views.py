"""Book CRUD with a live sync indicator, the catalogue import, and the running flows."""

from __future__ import annotations

import datetime
import time
from typing import Any

from django.contrib import messages
from django.contrib.messages.views import SuccessMessageMixin
from django.db import transaction
from django.forms import BaseModelForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import generic
from django.views.decorators.http import require_POST

from caravela_flow import FlowError, FlowNotFound, get_state, start, stop, subscription_url
from caravela_flow.api import backend
from caravela_flow.handle import is_flow_id
from caravela_flow.operations import flow_title

from . import fake_api, sync
from .flows import SYNC_RETRIES, BookImportFlow, BookSyncFlow
from .forms import BookForm
from .models import Book


class SyncOnSaveMixin:
    """After a book is saved (and committed), mark it dirty for its sync flow."""

    def form_valid(self, form: BaseModelForm) -> HttpResponse:
        response: HttpResponse = super().form_valid(form)  # type: ignore[misc]
        book_id = form.instance.pk
        transaction.on_commit(lambda: sync.mark_dirty(book_id))
        return response


class BookListView(generic.ListView):
    model = Book
    paginate_by = 25

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["rows"] = [(book, sync.sync_handle(book.pk)) for book in context["object_list"]]
        return context


class BookCreateView(SuccessMessageMixin, SyncOnSaveMixin, generic.CreateView):
    model = Book
    form_class = BookForm
    success_url = reverse_lazy("library:book_list")
    success_message = "Added “%(title)s”."


class BookUpdateView(SuccessMessageMixin, SyncOnSaveMixin, generic.UpdateView):
    """The book page: the form (saved as you type), both live indicators, the outage switch."""

    model = Book
    form_class = BookForm
    success_url = reverse_lazy("library:book_list")
    success_message = "Saved “%(title)s”."

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        # Started now if need be, so this page follows the flow its first edit reaches.
        context["sync_handle"] = sync.ensure(self.object)
        context["fake_api"] = fake_api.conditions()
        context["max_retries"] = SYNC_RETRIES
        return context


@require_POST
def book_autosave(request: HttpRequest, pk: int) -> JsonResponse:
    """Save the book page's form as the user types; the sync flow debounces the burst."""
    book = get_object_or_404(Book, pk=pk)
    form = BookForm(request.POST, instance=book)
    if not form.is_valid():
        return JsonResponse({"saved": False, "errors": form.errors.get_json_data()}, status=400)
    form.save()
    handle = sync.mark_dirty(book.pk)
    return JsonResponse(
        {
            "saved": True,
            "title": book.title,
            "subscription_url": subscription_url(handle, request.user),
        }
    )


@require_POST
def fake_api_conditions(request: HttpRequest) -> HttpResponse:
    """The outage switch: set the fake API's failure rate and latency, or go back to normal."""
    if request.POST.get("action") == "reset":
        fake_api.clear_conditions()
    else:
        try:
            rate = min(1.0, max(0.0, float(request.POST.get("failure_rate", ""))))
            if request.POST.get("action") == "outage":
                rate = 1.0
            latency = min(10_000.0, max(0.0, float(request.POST.get("latency_ms", ""))))
        except ValueError:
            return JsonResponse(
                {"error": "failure_rate and latency_ms must be numbers"}, status=400
            )
        fake_api.set_conditions(latency, rate)
    conditions = fake_api.conditions()
    if request.headers.get("Accept") == "application/json":
        return JsonResponse(conditions)
    messages.success(request, "Fake API conditions changed.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}):
        target = reverse("library:book_list")
    return redirect(target)


class BookDeleteView(SuccessMessageMixin, generic.DeleteView):
    model = Book
    success_url = reverse_lazy("library:book_list")

    def form_valid(self, form: Any) -> HttpResponse:
        book_id = self.object.pk  # set by post(); None once deleted
        response = super().form_valid(form)
        transaction.on_commit(lambda: sync.forget(book_id))
        return response

    def get_success_message(self, cleaned_data: dict[str, Any]) -> str:
        return f"Deleted “{self.object.title}”."


@require_POST
def book_sync(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask for a sync now (e.g. after a failed one), without editing the book."""
    book = get_object_or_404(Book, pk=pk)
    sync.mark_dirty(book.pk)
    messages.success(request, f"Sync of “{book.title}” requested.")
    return redirect("library:book_edit", pk=book.pk)


# --- import -----------------------------------------------------------------


def import_start(request: HttpRequest) -> HttpResponse:
    """GET: what an import does. POST: start one and go to its progress page."""
    if request.method == "POST":
        handle = start(BookImportFlow, "import_books", {"started_at": timezone.now().isoformat()})
        return HttpResponseRedirect(reverse("library:import_progress", args=[handle.id]))
    latency = fake_api.latency_ms()
    sources = [(source, round(latency * source.latency_factor)) for source in fake_api.SOURCES]
    return render(request, "library/import_start.html", {"sources": sources})


def import_progress(request: HttpRequest, flow_id: str) -> HttpResponse:
    """The live progress of one import (404 once the flow is no longer retained)."""
    if not is_flow_id(flow_id):
        raise Http404("No such import.")
    try:
        state = get_state(flow_id)
    except FlowNotFound:
        raise Http404("This import has finished and is no longer kept.") from None
    if "items" not in state or "sources" not in state:
        raise Http404("That flow is not an import.")
    return render(request, "library/import_progress.html", {"flow_id": flow_id, "state": state})


# --- running flows ------------------------------------------------------------

SYNC_KEY = BookSyncFlow.sync_book.key
IMPORT_KEY = BookImportFlow.import_books.key


def flow_name(definition_key: str) -> str:
    """A flow's name in words, its ``verbose_name`` ("Book sync"), as ``manage.py flows`` shows."""
    return flow_title(definition_key)


def _age_seconds(started_at: Any) -> float | None:
    if isinstance(started_at, str):
        started_at = parse_datetime(started_at)
    if not isinstance(started_at, datetime.datetime):
        return None
    return max(0.0, (timezone.now() - started_at).total_seconds())


def _sync_step(info: Any, state: dict[str, Any]) -> str:
    if info.status != "running":
        return "ended"
    if state.get("dirty") is True:
        return "letting edits settle (debounce)"
    if state.get("dirty"):
        attempt = int(state.get("attempts") or 0) + 1
        total = state.get("max_attempts") or attempt
        return f"pushing to the API (attempt {min(attempt, total)} of {total})"
    return "waiting for an edit"


IMPORT_STEPS = {
    "fetching": "fetching the feeds (parallel)",
    "checking": "checking the entries",
    "importing": "creating books (each)",
    "done": "done",
}


def _describe(info: Any) -> dict[str, Any]:
    """One row of the running-flows table: the flow's info plus what it is about."""
    row: dict[str, Any] = {
        "info": info,
        "id": info.id,
        "flow": info.flow,
        "name": flow_name(info.flow),
        "key": getattr(info, "key", None),
        "status": info.status,
        "version": info.version,
        "restarts": info.restarts,
        "step": "",
        "age_seconds": None,
        "about": "",
        "link": None,
        "stop_url": reverse("library:flow_stop", args=[info.id]),
    }
    try:
        state = get_state(info.id)
    except FlowError:
        state = {}
    row["age_seconds"] = _age_seconds(state.get("started_at"))
    if row["age_seconds"] is None and getattr(info, "started_at", None) is not None:
        row["age_seconds"] = max(0.0, time.time() - info.started_at)
    if info.flow == SYNC_KEY and state.get("book_id") is not None:
        book = Book.objects.filter(pk=state["book_id"]).only("title").first()
        row["about"] = f"“{book.title}”" if book else f"book {state['book_id']} (deleted)"
        row["link"] = reverse("library:book_edit", args=[book.pk]) if book else None
        row["key"] = row["key"] or f"book:{state['book_id']}"
        row["step"] = _sync_step(info, state)
    elif info.flow == IMPORT_KEY:
        row["about"] = f"import, {state.get('phase', '?')}: {state.get('created', 0)} created"
        row["link"] = reverse("library:import_progress", args=[info.id])
        phase = state.get("phase", "")
        row["step"] = IMPORT_STEPS.get(phase, phase) if info.status == "running" else "ended"
        if phase == "importing":
            row["step"] += f": {state.get('processed', 0)} of {state.get('total', 0)}"
    return row


def _flow_rows() -> list[dict[str, Any]]:
    infos = sorted(backend().flows(), key=lambda info: (info.status != "running", info.flow))
    return [_describe(info) for info in infos]


def flow_list(request: HttpRequest) -> HttpResponse:
    """The flows dashboard: every flow this deployment hosts, updated live, a stop button each."""
    return render(request, "library/flow_list.html", {"rows": _flow_rows()})


def flow_list_data(request: HttpRequest) -> JsonResponse:
    """The dashboard's rows as JSON (the page polls it)."""
    rows = [{k: v for k, v in row.items() if k != "info"} for row in _flow_rows()]
    return JsonResponse({"flows": rows})


@require_POST
def flow_stop(request: HttpRequest, flow_id: str) -> HttpResponse:
    """Stop one flow; its subscribers see it end as "stopped"."""
    if not is_flow_id(flow_id):
        raise Http404("No such flow.")
    try:
        stop(flow_id)
    except FlowNotFound:
        stopped, text = False, f"Flow {flow_id[:8]}… had already ended."
    else:
        stopped, text = True, f"Stopped flow {flow_id[:8]}…."
    if request.headers.get("Accept") == "application/json":
        return JsonResponse({"stopped": stopped, "message": text})
    (messages.success if stopped else messages.info)(request, text)
    return redirect("library:flow_list")
