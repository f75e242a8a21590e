"""The demo's flows: keeping each book in sync with the (fake) external API, and
importing books from several catalogue feeds.

caravela_flow discovers this module (as the admin discovers ``admin.py``).
Step functions are module-level so logs and failure reasons name them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q

from caravela_flow import (
    Error,
    Flows,
    Ok,
    Retry,
    Skip,
    debounce,
    each,
    flow,
    parallel,
    repeat,
    run,
    sequence,
    set_state,
    wait_until,
)

from . import fake_api
from .isbn import normalise_isbn
from .models import Book

logger = logging.getLogger(__name__)

# --- BookSyncFlow -----------------------------------------------------------

#: Quiet time after the last edit before a sync starts.
SYNC_DEBOUNCE_MS = 500
#: Retries after a failed push (so up to SYNC_RETRIES + 1 attempts per sync).
SYNC_RETRIES = 3
#: Delay before the first retry; exponential backoff doubles it each time.
SYNC_BASE_DELAY_MS = 200


def is_dirty(state: dict[str, Any]) -> bool:
    """Whether the book has edits not yet pushed (``True``, or ``"processing"`` mid-sync)."""
    return bool(state["dirty"])


def begin_sync(state: dict[str, Any]) -> dict[str, Any]:
    """Mark the sync as in progress; edits from now on set ``dirty`` back to ``True``."""
    return {**state, "dirty": "processing", "attempts": 0, "last_error": None}


def push_book(state: dict[str, Any]) -> Ok | Retry | Error:
    """Push the book to the external API and record when it was synced.

    Runs in a worker thread (plain ORM calls). A refusal from the API is a
    ``Retry`` carrying the attempt count and the error, so the page can show
    them while the flow backs off; when the retries are used up the flow
    fails with "retries exhausted" and the state keeps the last error.
    """
    book_id = state["book_id"]
    attempt = int(state.get("attempts") or 0) + 1
    fields = Book.objects.filter(pk=book_id).values("title", "author", "isbn", "year").first()
    if fields is None:
        return Error(f"book {book_id} no longer exists")
    try:
        receipt = fake_api.sync_book(book_id, dict(fields))
    except fake_api.FakeApiError as exc:
        logger.info("book %s: sync attempt %s failed: %s", book_id, attempt, exc)
        return Retry({**state, "attempts": attempt, "last_error": str(exc)})
    synced_at = receipt["received_at"]
    # Only the sync columns: a save() would overwrite an edit made meanwhile.
    with transaction.atomic():
        updated = Book.objects.filter(pk=book_id).update(
            synced_at=synced_at, sync_version=F("sync_version") + 1
        )
        version = Book.objects.filter(pk=book_id).values_list("sync_version", flat=True).first()
    if not updated:
        return Error(f"book {book_id} no longer exists")
    # Computed from the state this call was given; an edit that arrived during
    # the call is applied after this result, so it is never lost.
    return Ok(
        {
            **state,
            "dirty": False,
            "attempts": attempt,
            "last_error": None,
            "synced_at": synced_at,
            "sync_version": version,
            "syncs": int(state.get("syncs") or 0) + 1,
        }
    )


def catch_up(state: dict[str, Any]) -> Ok:
    """Start from the book as it is: its last sync on record, and whether it changed since.

    A flow started again from its start spec (its worker was lost and another
    adopted it) thereby picks up an edit whose sync was cut short.
    """
    book = (
        Book.objects.filter(pk=state["book_id"])
        .values("updated_at", "synced_at", "sync_version")
        .first()
    )
    if book is None or book["synced_at"] is None:
        return Ok(state)
    return Ok(
        {
            **state,
            "synced_at": book["synced_at"].isoformat(),
            "sync_version": book["sync_version"],
            "dirty": bool(state["dirty"]) or book["updated_at"] > book["synced_at"],
        }
    )


class BookSyncFlow(Flows):
    """One per book: catches up, waits for edits, lets them settle, then pushes the book."""

    sync_book = flow(
        run(catch_up),
        repeat(
            wait_until(is_dirty),
            debounce(SYNC_DEBOUNCE_MS),
            sequence(
                set_state(begin_sync),
                run(
                    push_book,
                    retries=SYNC_RETRIES,
                    backoff="exponential",
                    base_delay=SYNC_BASE_DELAY_MS,
                ),
            ),
        ),
        initial_state={
            "dirty": False,
            "book_id": None,
            "attempts": 0,
            "max_attempts": SYNC_RETRIES + 1,
            "last_error": None,
            "synced_at": None,
            "sync_version": None,
            "syncs": 0,
        },
        verbose_name="Book sync",
    )


# --- BookImportFlow ---------------------------------------------------------

#: Why an entry that looked fine was not created.
ALREADY_IN_CATALOGUE = "already in the catalogue"


def fetch_sources(state: dict[str, Any]) -> list[Callable[[], dict[str, Any]]]:
    """One fetch per feed; ``parallel`` runs them at once, each in a worker thread."""
    return [functools.partial(fake_api.fetch_catalogue, key) for key in state["sources"]]


def entry_problem(item: dict[str, Any]) -> str | None:
    """Why a catalogue entry cannot become a book, or None. Normalises ``item["isbn"]``."""
    if not item["title"]:
        return "no title"
    if not item["author"]:
        return "no author"
    try:
        item["isbn"] = normalise_isbn(item["isbn"])
    except ValueError:
        return f"invalid ISBN {item['isbn']!r}"
    year = item["year"]
    if year is not None and not (isinstance(year, int) and 0 < year <= 2100):
        return f"implausible year {year!r}"
    return None


def _identity(item: dict[str, Any]) -> str:
    """What makes two entries the same book: the ISBN, else title and author."""
    if item["isbn"]:
        return f"isbn:{item['isbn']}"
    return f"book:{item['title'].casefold()}|{item['author'].casefold()}"


def collect_entries(state: dict[str, Any]) -> dict[str, Any]:
    """Flatten the fetched pages into numbered items; mark invalid and repeated ones.

    Each item has ``n`` (1-based position), its source and fields, and
    ``problem``: None, or why it will be skipped.
    """
    items: list[dict[str, Any]] = []
    first_seen: dict[str, dict[str, Any]] = {}
    for page in state["pages"]:
        for raw in page["entries"]:
            item = {
                "n": len(items) + 1,
                "source": page["source"],
                "source_name": page["name"],
                "title": str(raw.get("title") or "").strip(),
                "author": str(raw.get("author") or "").strip(),
                "isbn": str(raw.get("isbn") or ""),
                "year": raw.get("year"),
                "problem": None,
            }
            problem = entry_problem(item)
            if problem is None:
                original = first_seen.setdefault(_identity(item), item)
                if original is not item:
                    problem = f"duplicate of #{original['n']} from {original['source_name']}"
            item["problem"] = problem
            items.append(item)
    pages = [
        {"source": page["source"], "name": page["name"], "count": len(page["entries"])}
        for page in state["pages"]
    ]
    return {**state, "pages": pages, "items": items, "total": len(items), "phase": "checking"}


def check_catalogue(state: dict[str, Any]) -> Ok:
    """Mark the items whose book the library already has (ORM, in a worker thread)."""
    items = [dict(item) for item in state["items"]]
    candidates = [item for item in items if item["problem"] is None]
    isbns = {item["isbn"] for item in candidates if item["isbn"]}
    known = set(Book.objects.filter(isbn__in=isbns).values_list("isbn", flat=True))
    for item in candidates:
        if item["isbn"]:
            exists = item["isbn"] in known
        else:
            exists = Book.objects.filter(
                Q(title__iexact=item["title"]) & Q(author__iexact=item["author"])
            ).exists()
        if exists:
            item["problem"] = ALREADY_IN_CATALOGUE
    return Ok({**state, "items": items, "phase": "importing"})


def skips_up_to(state: dict[str, Any], position: int) -> list[dict[str, Any]]:
    """The items at or before ``position`` that were not created, with the reason."""
    created = {book["n"] for book in state["imported"]}
    return [
        {
            "n": item["n"],
            "title": item["title"] or "(untitled)",
            "source": item["source_name"],
            "reason": item["problem"] or ALREADY_IN_CATALOGUE,
        }
        for item in state["items"]
        if item["n"] <= position and item["n"] not in created
    ]


def import_entry(item: dict[str, Any], state: dict[str, Any]) -> Ok | Skip:
    """Create the book for one item, or ``Skip`` it with the reason.

    A ``Skip`` leaves the state as it is; the next created book's ``Ok`` (or
    the summary) brings the counters and the list of skips up to date.
    """
    if item["problem"]:
        return Skip(item["problem"])
    try:
        with transaction.atomic():
            book = Book.objects.create(
                title=item["title"], author=item["author"], isbn=item["isbn"], year=item["year"]
            )
    except IntegrityError:
        # Someone added the same ISBN since check_catalogue looked.
        return Skip(ALREADY_IN_CATALOGUE)
    fake_api.acknowledge(item["source"])
    imported = [*state["imported"], {"n": item["n"], "id": book.pk, "title": book.title}]
    state = {**state, "imported": imported, "created": len(imported), "processed": item["n"]}
    skips = skips_up_to(state, item["n"])
    return Ok({**state, "skips": skips, "skipped": len(skips)})


async def sync_imported(state: dict[str, Any]) -> None:
    """Have each created book synced, like a book saved from its page."""
    from . import sync

    for book in state["imported"]:
        await sync.amark_dirty(book["id"])


def summarise(state: dict[str, Any]) -> dict[str, Any]:
    """Final counters: every item is now either created or skipped."""
    skips = skips_up_to(state, state["total"])
    return {
        **state,
        "phase": "done",
        "processed": state["total"],
        "created": len(state["imported"]),
        "skips": skips,
        "skipped": len(skips),
    }


class BookImportFlow(Flows):
    """Fetch every feed at once, then create the books one by one, skipping bad entries."""

    import_books = flow(
        parallel(fetch_sources, collect_as="pages"),
        set_state(collect_entries),
        run(check_catalogue),
        each("items", import_entry),
        run(sync_imported),
        set_state(summarise),
        initial_state={
            "sources": [source.key for source in fake_api.SOURCES],
            "phase": "fetching",
            "pages": [],
            "items": [],
            "total": 0,
            "processed": 0,
            "created": 0,
            "skipped": 0,
            "imported": [],
            "skips": [],
        },
        verbose_name="Book import",
    )
