"""Which sync flow belongs to which book, in this process.

One ``BookSyncFlow.sync_book`` flow per book, started on the book's first
edit and reused afterwards; a flow that is gone (failed, stopped, or no
longer retained) is replaced by a new one on the next edit. The table lives
in the process that serves the views (in local mode the flows do too).
"""

from __future__ import annotations

import contextlib
import threading

from caravela_flow import FlowHandle, FlowNotFound, get_state, signal, start, stop

from .flows import BookSyncFlow

_lock = threading.Lock()
_flows: dict[int, FlowHandle] = {}


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
        handle = start(BookSyncFlow, "sync_book", {"book_id": book_id})
        _flows[book_id] = handle
        signal(handle, {"dirty": True})
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
