"""Which sync flow belongs to which book.

One ``BookSyncFlow.sync_book`` flow per book, started when the book's page
is opened or the book is first edited, and reused afterwards; a flow that is
gone (failed, stopped, or no longer retained) is replaced by a new one on
the next edit. The table lives in the process that serves the views (in
local mode the flows do too); :func:`start_flow` is the one place a book's
flow starts.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from django.utils import timezone

from caravela_flow import FlowHandle, FlowNotFound, asignal, astart, get_state, signal, start, stop
from caravela_flow.components import flow_snapshot

from .flows import BookSyncFlow
from .models import Book

_lock = threading.Lock()
_flows: dict[int, FlowHandle] = {}


def book_key(book_id: int) -> str:
    """The key of a book's sync flow."""
    return f"book:{book_id}"


def start_state(book_id: int, book: Book | None = None) -> dict[str, Any]:
    """A new flow's state: the book, when the flow started, and its last sync on record."""
    state: dict[str, Any] = {"book_id": book_id, "started_at": timezone.now().isoformat()}
    if book is not None and book.synced_at is not None:
        state.update(synced_at=book.synced_at.isoformat(), sync_version=book.sync_version)
    return state


def start_flow(book_id: int, book: Book | None = None) -> FlowHandle:
    """Start the book's sync flow."""
    # Keyed: one flow per book across the deployment, whichever process serves the page.
    return start(BookSyncFlow, "sync_book", start_state(book_id, book), key=book_key(book_id))


def _running(book_id: int) -> FlowHandle | None:
    handle = _flows.get(book_id)
    if handle is None:
        return None
    try:
        running = flow_snapshot(handle).status == "running"
    except FlowNotFound:
        return None
    return handle if running else None


def ensure(book: Book) -> FlowHandle:
    """The book's sync flow, started (idle, showing the last sync on record) if there is none.

    A page opened before the book's first edit then follows the flow that edit reaches.
    """
    with _lock:
        handle = _running(book.pk)
        if handle is None:
            handle = _flows[book.pk] = start_flow(book.pk, book)
        return handle


def mark_dirty(book_id: int) -> FlowHandle:
    """Tell the book's sync flow that the book changed (starting the flow if needed)."""
    with _lock:
        handle = _flows.get(book_id)
        if handle is not None:
            try:
                signal(handle, {"dirty": True})
            except FlowNotFound:
                pass
            else:
                return handle
        book = Book.objects.filter(pk=book_id).first()
        handle = start_flow(book_id, book)
        _flows[book_id] = handle
        signal(handle, {"dirty": True})
        return handle


async def amark_dirty(book_id: int) -> FlowHandle:
    """:func:`mark_dirty` for async code (a flow's step), for a book that has never synced."""
    handle = _flows.get(book_id)
    if handle is not None:
        with contextlib.suppress(FlowNotFound):
            await asignal(handle, {"dirty": True})
            return handle
    handle = await astart(BookSyncFlow, "sync_book", start_state(book_id), key=book_key(book_id))
    # No lock: this runs on an event loop that a view holding the lock may be waiting for.
    _flows[book_id] = handle
    await asignal(handle, {"dirty": True})
    return handle


def sync_handle(book_id: int) -> FlowHandle | None:
    """The book's sync flow if it still exists (running, or finished and retained)."""
    handle = _flows.get(book_id)
    if handle is None:
        return None
    try:
        get_state(handle)
    except FlowNotFound:
        with _lock:
            if _flows.get(book_id) == handle:
                del _flows[book_id]
        return None
    return handle


def forget(book_id: int) -> None:
    """Stop the book's sync flow, if it runs, and drop it (the book was deleted)."""
    with _lock:
        handle = _flows.pop(book_id, None)
    if handle is not None:
        with contextlib.suppress(FlowNotFound):
            stop(handle)


def forget_all() -> None:
    """Stop every sync flow this table knows and empty it (for tests)."""
    with _lock:
        handles = list(_flows.values())
        _flows.clear()
    for handle in handles:
        with contextlib.suppress(FlowNotFound):
            stop(handle)


def known_books() -> dict[int, FlowHandle]:
    """A copy of the table: book id → handle."""
    with _lock:
        return dict(_flows)
