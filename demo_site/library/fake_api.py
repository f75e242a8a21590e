"""A fake external book service, so the demo's flows have something slow and flaky to talk to.

These settings shape it (read at every call, so ``override_settings`` works):

- ``FAKE_API_LATENCY_MS``: typical time a call takes (each call draws from
  75 to 125 % of it; catalogue sources are slower by their own factor);
- ``FAKE_API_FAILURE_RATE``: chance, 0 to 1, that :func:`sync_book` fails;
- ``FAKE_API_IMPORT_FAILURE_RATE`` (optional, default 0): chance that a
  catalogue fetch fails.

The outage switch on the book page overrides the first two at once, for
every process (see :func:`set_conditions`; kept in Django's cache, which is
Redis when ``REDIS_URL`` is set).

Every random draw goes through :data:`rng`; tests can ``rng.seed(...)`` it,
or set a failure rate of 0 or 1 to make the outcome certain.

The calls block (``time.sleep``): run them from a flow's ``run``/``each``
step or ``parallel`` task, which call sync functions in a worker thread.
"""

from __future__ import annotations

import datetime
import random
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

#: The source of every random draw (latency jitter, failures). Seed it in tests.
rng = random.Random()

SYNC_ERRORS = (
    "503 Service Unavailable",
    "504 Gateway Timeout",
    "429 Too Many Requests",
    "connection reset by peer",
)


class FakeApiError(Exception):
    """The fake service refused or failed a call."""


@dataclass(frozen=True)
class Source:
    """One catalogue feed the import reads."""

    key: str
    name: str
    #: How much slower than ``FAKE_API_LATENCY_MS`` a fetch of this feed is.
    latency_factor: float


SOURCES = (
    Source("northwind", "Northwind Books", 1.0),
    Source("old-stacks", "Old Stacks Archive", 1.6),
    Source("small-press", "Small Press Feed", 2.2),
)
SOURCES_BY_KEY = {source.key: source for source in SOURCES}


def _entry(title: str, author: str, isbn: str = "", year: int | None = None) -> dict[str, Any]:
    return {"title": title, "author": author, "isbn": isbn, "year": year}


# What each feed returns. Some entries are invalid (no title, no author, a bad
# ISBN, a year in the future) and some appear in two feeds, so an import
# always has something to skip.
CATALOGUE: dict[str, tuple[dict[str, Any], ...]] = {
    "northwind": (
        _entry("Pride and Prejudice", "Jane Austen", "978-0-14-143951-8", 1813),
        _entry("Moby-Dick", "Herman Melville", "978-0-14-243724-7", 1851),
        _entry("The Left Hand of Darkness", "Ursula K. Le Guin", "978-0-441-47812-5", 1969),
        _entry("Middlemarch", "George Eliot", "978-0-14-143954-9", 1871),
        _entry("", "Anonymous", "", 1900),
        _entry("Frankenstein", "Mary Shelley", "978-0-14-143947-1", 1818),
        _entry("Dune", "Frank Herbert", "978-0-441-01359-3", 1965),
    ),
    "old-stacks": (
        _entry("Great Expectations", "Charles Dickens", "978-0-14-143956-3", 1861),
        _entry("Moby-Dick", "Herman Melville", "9780142437247", 1851),
        _entry("The Odyssey", "Homer"),
        _entry("Jane Eyre", "Charlotte Brontë", "978-0-14-144114-6", 1847),
        _entry("Wuthering Heights", "Emily Brontë", "978-0-14-143955", 1847),
        _entry("Beowulf", "", "978-0-393-32097-8", 1000),
        _entry("War and Peace", "Leo Tolstoy", "978-0-14-303999-0", 1869),
        _entry("Don Quixote", "Miguel de Cervantes", "978-0-06-093434-7", 1605),
    ),
    "small-press": (
        _entry("Kindred", "Octavia E. Butler", "978-0-8070-8369-7", 1979),
        _entry("The Dispossessed", "Ursula K. Le Guin", "978-0-06-051275-0", 1974),
        _entry("Frankenstein", "Mary Shelley", "978-0-14-143947-1", 1818),
        _entry("The Odyssey", "Homer"),
        _entry("Piranesi", "Susanna Clarke", "978-1-63557-563-4", 2020),
        _entry("Tomorrow's Classic", "A. N. Author", "", 2999),
        _entry("The Fifth Season", "N. K. Jemisin", "978-0-316-22929-6", 2015),
    ),
}


#: Cache key of the outage switch's values.
CONDITIONS_KEY = "library:fake-api-conditions"


def conditions() -> dict[str, Any]:
    """``{"latency_ms", "failure_rate", "switched"}``: the switch's values, else the settings'."""
    switched = cache.get(CONDITIONS_KEY)
    if isinstance(switched, dict):
        return {**switched, "switched": True}
    return {
        "latency_ms": max(0.0, float(settings.FAKE_API_LATENCY_MS)),
        "failure_rate": float(settings.FAKE_API_FAILURE_RATE),
        "switched": False,
    }


def set_conditions(latency_ms: float, failure_rate: float) -> None:
    """Override latency and failure rate for every later call, in every process."""
    values = {"latency_ms": max(0.0, float(latency_ms)), "failure_rate": float(failure_rate)}
    cache.set(CONDITIONS_KEY, values, timeout=None)


def clear_conditions() -> None:
    """Back to the settings' latency and failure rate."""
    cache.delete(CONDITIONS_KEY)


def latency_ms() -> float:
    """The typical latency now, in milliseconds."""
    return float(conditions()["latency_ms"])


def _pause(factor: float = 1.0) -> None:
    seconds = latency_ms() * factor * rng.uniform(0.75, 1.25) / 1000
    if seconds > 0:
        time.sleep(seconds)


def _fails(rate: float) -> bool:
    return rng.random() < rate


def sync_book(book_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    """Push one book's data to the service; raises :class:`FakeApiError` at the failure rate.

    Returns the service's receipt: ``{"remote_id", "received_at", "fields"}``.
    """
    _pause()
    if _fails(float(conditions()["failure_rate"])):
        raise FakeApiError(rng.choice(SYNC_ERRORS))
    received_at: datetime.datetime = timezone.now()
    return {"remote_id": f"bk-{book_id}", "received_at": received_at, "fields": sorted(payload)}


def fetch_catalogue(source_key: str) -> dict[str, Any]:
    """One feed's entries (copies), after that feed's latency.

    Returns ``{"source", "name", "entries"}``; raises :class:`FakeApiError` at
    ``FAKE_API_IMPORT_FAILURE_RATE`` and ``KeyError`` for an unknown source.
    """
    source = SOURCES_BY_KEY[source_key]
    _pause(source.latency_factor)
    if _fails(float(getattr(settings, "FAKE_API_IMPORT_FAILURE_RATE", 0.0))):
        raise FakeApiError(f"{source.name}: {rng.choice(SYNC_ERRORS)}")
    return {
        "source": source.key,
        "name": source.name,
        "entries": [dict(entry) for entry in CATALOGUE[source.key]],
    }


def acknowledge(source_key: str) -> None:
    """Tell a feed that one of its entries was imported (half the usual latency)."""
    if source_key not in SOURCES_BY_KEY:
        raise KeyError(source_key)
    _pause(0.5)
