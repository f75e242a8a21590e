"""The demo's flows against its fake API: BookSyncFlow.sync_book and BookImportFlow.import_books.

Step functions use the ORM in worker threads, so these are TransactionTestCases:
rows the test creates are committed and visible to those threads.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any
from unittest import mock

from django.test import SimpleTestCase, TransactionTestCase, override_settings

from caravela_flow import FlowHandle, FlowNotFound, Ok, Skip, get_state, signal, stop
from caravela_flow.testing import FlowProbe, start_probe
from demo_site.library import fake_api, sync
from demo_site.library.flows import (
    ALREADY_IN_CATALOGUE,
    SYNC_RETRIES,
    BookImportFlow,
    BookSyncFlow,
    collect_entries,
    import_entry,
)
from demo_site.library.models import Book

DUNE_ISBN = "9780441013593"

# Every entry of the fake catalogue that an import into an empty library skips, by position.
SKIPPED_IN_EMPTY_LIBRARY = {
    5: "no title",
    9: "duplicate of #2 from Northwind Books",
    12: "invalid ISBN '978-0-14-143955'",
    13: "no author",
    18: "duplicate of #6 from Northwind Books",
    19: "duplicate of #10 from Old Stacks Archive",
    21: "implausible year 2999",
}
CATALOGUE_SIZE = 22


def stop_quietly(handle: FlowHandle | None) -> None:
    if handle is not None:
        with contextlib.suppress(FlowNotFound):
            stop(handle)


class GatedSync:
    """Replaces fake_api.sync_book: each call waits until the test opens the gate."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.entered = threading.Semaphore(0)
        self.gate = threading.Event()

    def __call__(self, book_id: int, payload: dict[str, Any]) -> Any:
        self.entered.release()
        if not self.gate.wait(5):
            raise TimeoutError("the test never opened the gate")
        return self.real(book_id, payload)


@override_settings(FAKE_API_LATENCY_MS=5, FAKE_API_FAILURE_RATE=0)
class BookSyncFlowTests(TransactionTestCase):
    book: Book

    def setUp(self) -> None:
        self.book = Book.objects.create(title="Dune", author="Frank Herbert", isbn=DUNE_ISBN)
        fake_api.rng.seed(1965)

    def start(self) -> FlowProbe:
        probe = start_probe(BookSyncFlow, "sync_book", {"book_id": self.book.pk})
        assert probe.handle is not None
        self.handle: FlowHandle = probe.handle
        self.addCleanup(stop_quietly, self.handle)
        return probe

    def dirty_values(self, probe: FlowProbe) -> list[Any]:
        return [state["dirty"] for state in probe.states]

    def test_idle_until_marked_dirty(self) -> None:
        probe = self.start()
        state = get_state(self.handle)
        self.assertEqual(state["dirty"], False)
        self.assertEqual(state["book_id"], self.book.pk)
        self.assertEqual(state["max_attempts"], SYNC_RETRIES + 1)
        self.assertEqual(probe.messages, [])
        self.book.refresh_from_db()
        self.assertIsNone(self.book.synced_at)

    def test_syncs_a_dirty_book(self) -> None:
        probe = self.start()
        signal(self.handle, {"dirty": True})
        state = probe.wait_state({"syncs": 1})
        self.assertEqual(state["dirty"], False)
        self.assertEqual(state["attempts"], 1)
        self.assertIsNone(state["last_error"])
        self.assertEqual(state["sync_version"], 1)
        self.book.refresh_from_db()
        self.assertIsNotNone(self.book.synced_at)
        self.assertEqual(self.book.sync_version, 1)
        self.assertEqual(get_state(self.handle)["synced_at"], self.book.synced_at)
        self.assertEqual(self.dirty_values(probe), [True, "processing", False])
        self.assertIsNone(probe.final, "the sync loop keeps running after a sync")

    def test_edits_during_the_debounce_make_one_sync(self) -> None:
        probe = self.start()
        for year in (1965, 1966, 1967):
            signal(self.handle, {"dirty": True, "year": year})
        state = probe.wait_state({"syncs": 1})
        self.assertEqual(state["year"], 1967)
        self.assertEqual(self.dirty_values(probe).count("processing"), 1)
        self.book.refresh_from_db()
        self.assertEqual(self.book.sync_version, 1)

    @override_settings(FAKE_API_FAILURE_RATE=1)
    def test_retries_then_fails_with_the_attempts_and_last_error(self) -> None:
        probe = self.start()
        signal(self.handle, {"dirty": True})
        final = probe.wait_end(timeout=10)
        self.assertEqual(final["type"], "flow.error")
        self.assertEqual(final["reason"], "retries exhausted")
        state = get_state(self.handle)
        self.assertEqual(state["attempts"], SYNC_RETRIES + 1)
        self.assertIn(state["last_error"], fake_api.SYNC_ERRORS)
        self.assertEqual(state["dirty"], "processing")
        # Each failed attempt was visible as a state of its own.
        attempts = [s["attempts"] for s in probe.states if s.get("last_error")]
        self.assertEqual(attempts, [1, 2, 3, 4])
        self.book.refresh_from_db()
        self.assertIsNone(self.book.synced_at)
        self.assertEqual(self.book.sync_version, 0)
        with self.assertRaises(FlowNotFound):
            signal(self.handle, {"dirty": True})

    def test_a_failed_attempt_then_success_keeps_the_attempt_count(self) -> None:
        calls = iter([fake_api.FakeApiError("503 Service Unavailable"), None])
        real = fake_api.sync_book

        def flaky(book_id: int, payload: dict[str, Any]) -> Any:
            error = next(calls)
            if error is not None:
                raise error
            return real(book_id, payload)

        probe = self.start()
        with mock.patch.object(fake_api, "sync_book", flaky):
            signal(self.handle, {"dirty": True})
            state = probe.wait_state({"syncs": 1})
        self.assertEqual(state["attempts"], 2)
        self.assertIsNone(state["last_error"])
        retrying = [s for s in probe.states if s.get("last_error")]
        self.assertEqual(len(retrying), 1)
        self.assertEqual(retrying[0]["last_error"], "503 Service Unavailable")
        self.assertEqual(retrying[0]["dirty"], "processing")

    def test_an_edit_during_a_sync_triggers_a_second_sync(self) -> None:
        gated = GatedSync(fake_api.sync_book)
        probe = self.start()
        with mock.patch.object(fake_api, "sync_book", gated):
            signal(self.handle, {"dirty": True})
            self.assertTrue(gated.entered.acquire(timeout=5), "the first sync never started")
            # The edit lands while the API call is in flight: it is queued ...
            Book.objects.filter(pk=self.book.pk).update(title="Dune Messiah")
            signal(self.handle, {"dirty": True})
            self.assertEqual(get_state(self.handle)["dirty"], "processing")
            gated.gate.set()
            # ... applied after the first sync's Ok, and synced again.
            state = probe.wait_state({"syncs": 2})
        self.assertEqual(state["dirty"], False)
        self.assertEqual(state["sync_version"], 2)
        self.assertEqual(
            self.dirty_values(probe), [True, "processing", False, True, "processing", False]
        )
        after_first = next(s for s in probe.states if s.get("syncs") == 1)
        self.assertEqual(after_first["dirty"], False)
        self.book.refresh_from_db()
        self.assertEqual(self.book.sync_version, 2)
        self.assertEqual(self.book.title, "Dune Messiah")

    def test_a_deleted_book_fails_the_sync(self) -> None:
        probe = self.start()
        self.book.delete()
        with override_settings(FAKE_API_LATENCY_MS=0):
            signal(self.handle, {"dirty": True})
            final = probe.wait_end(timeout=10)
        self.assertEqual(final["type"], "flow.error")
        self.assertIn("no longer exists", final["reason"])


@override_settings(FAKE_API_LATENCY_MS=5, FAKE_API_FAILURE_RATE=0, FAKE_API_IMPORT_FAILURE_RATE=0)
class BookImportFlowTests(TransactionTestCase):
    def setUp(self) -> None:
        # An import has the books it creates synced: stop those flows afterwards.
        sync.forget_all()
        self.addCleanup(sync.forget_all)

    def run_import(self) -> tuple[FlowProbe, dict[str, Any]]:
        probe = start_probe(BookImportFlow, "import_books")
        self.addCleanup(stop_quietly, probe.handle)
        final = probe.wait_end(timeout=15)
        self.assertEqual(final["type"], "flow.done", final)
        return probe, final["state"]

    def test_creates_the_books_and_skips_the_rest_with_reasons(self) -> None:
        _, state = self.run_import()
        self.assertEqual(state["phase"], "done")
        self.assertEqual(state["total"], CATALOGUE_SIZE)
        self.assertEqual(state["processed"], CATALOGUE_SIZE)
        self.assertEqual(state["created"], CATALOGUE_SIZE - len(SKIPPED_IN_EMPTY_LIBRARY))
        self.assertEqual(state["skipped"], len(SKIPPED_IN_EMPTY_LIBRARY))
        self.assertEqual({s["n"]: s["reason"] for s in state["skips"]}, SKIPPED_IN_EMPTY_LIBRARY)
        self.assertEqual(
            [(p["source"], p["count"]) for p in state["pages"]],
            [("northwind", 7), ("old-stacks", 8), ("small-press", 7)],
        )
        self.assertEqual(Book.objects.count(), state["created"])
        self.assertEqual(Book.objects.filter(title="Moby-Dick").count(), 1)
        self.assertEqual(Book.objects.filter(title="The Odyssey").count(), 1)
        self.assertFalse(Book.objects.filter(title="Beowulf").exists())
        kindred = Book.objects.get(title="Kindred")
        self.assertEqual(
            (kindred.author, kindred.isbn, kindred.year),
            ("Octavia E. Butler", "9780807083697", 1979),
        )
        self.assertEqual(
            sorted(b["id"] for b in state["imported"]),
            sorted(Book.objects.values_list("pk", flat=True)),
        )

    def test_progress_is_published_book_by_book(self) -> None:
        probe, state = self.run_import()
        phases = [s["phase"] for s in probe.states]
        self.assertEqual(phases[:3], ["fetching", "checking", "importing"])
        self.assertEqual(phases[-1], "done")
        created = [s["created"] for s in probe.states]
        self.assertEqual(created, sorted(created))
        # One message per created book (0 … 15), not a jump to the end.
        self.assertEqual(sorted(set(created)), list(range(state["created"] + 1)))
        for s in probe.states:
            self.assertLessEqual(s["created"] + s["skipped"], s["total"] or CATALOGUE_SIZE)
            self.assertEqual(s["skipped"], len(s["skips"]))

    def test_books_already_in_the_library_are_skipped(self) -> None:
        Book.objects.create(title="Dune", author="Frank Herbert", isbn=DUNE_ISBN)
        Book.objects.create(title="the odyssey", author="HOMER")
        _, state = self.run_import()
        reasons = {s["n"]: s["reason"] for s in state["skips"]}
        self.assertEqual(reasons[7], ALREADY_IN_CATALOGUE)  # Dune, same ISBN
        self.assertEqual(reasons[10], ALREADY_IN_CATALOGUE)  # The Odyssey, same title and author
        self.assertEqual(state["created"], CATALOGUE_SIZE - len(SKIPPED_IN_EMPTY_LIBRARY) - 2)
        self.assertEqual(Book.objects.filter(isbn=DUNE_ISBN).count(), 1)

    def test_a_second_import_creates_nothing(self) -> None:
        _, first = self.run_import()
        _, second = self.run_import()
        self.assertEqual(second["created"], 0)
        self.assertEqual(second["skipped"], CATALOGUE_SIZE)
        self.assertEqual(Book.objects.count(), first["created"])

    def test_feeds_are_fetched_at_the_same_time(self) -> None:
        # Each fetch waits for the other two: this passes only if all three run at once.
        barrier = threading.Barrier(len(fake_api.SOURCES), timeout=5)
        real = fake_api.fetch_catalogue

        def fetch(source_key: str) -> dict[str, Any]:
            barrier.wait()
            return real(source_key)

        with mock.patch.object(fake_api, "fetch_catalogue", fetch):
            _, state = self.run_import()
        self.assertEqual(state["total"], CATALOGUE_SIZE)

    @override_settings(FAKE_API_IMPORT_FAILURE_RATE=1)
    def test_a_feed_that_fails_fails_the_import(self) -> None:
        probe = start_probe(BookImportFlow, "import_books")
        self.addCleanup(stop_quietly, probe.handle)
        final = probe.wait_end(timeout=15)
        self.assertEqual(final["type"], "flow.error")
        self.assertTrue(final["reason"].startswith("FakeApiError: "), final["reason"])
        self.assertEqual(Book.objects.count(), 0)

    def test_an_entry_added_meanwhile_is_skipped(self) -> None:
        Book.objects.create(title="Kindred", author="Octavia E. Butler", isbn="9780807083697")
        item = {
            "n": 1,
            "source": "small-press",
            "source_name": "Small Press Feed",
            "title": "Kindred",
            "author": "Octavia E. Butler",
            "isbn": "9780807083697",
            "year": 1979,
            "problem": None,
        }
        state = dict(BookImportFlow.import_books.initial_state, items=[item], total=1)
        self.assertEqual(import_entry(item, state), Skip(ALREADY_IN_CATALOGUE))
        self.assertEqual(Book.objects.count(), 1)

    def test_import_entry_counts_a_created_book(self) -> None:
        items = [
            {
                "n": 1,
                "source": "northwind",
                "source_name": "Northwind Books",
                "title": "",
                "author": "A",
                "isbn": "",
                "year": None,
                "problem": "no title",
            },
            {
                "n": 2,
                "source": "northwind",
                "source_name": "Northwind Books",
                "title": "Emma",
                "author": "Jane Austen",
                "isbn": "",
                "year": 1815,
                "problem": None,
            },
        ]
        state = dict(BookImportFlow.import_books.initial_state, items=items, total=2)
        self.assertEqual(import_entry(items[0], state), Skip("no title"))
        with override_settings(FAKE_API_LATENCY_MS=0):
            result = import_entry(items[1], state)
        assert isinstance(result, Ok)
        emma = Book.objects.get(title="Emma")
        self.assertEqual(result.state["imported"], [{"n": 2, "id": emma.pk, "title": "Emma"}])
        self.assertEqual((result.state["created"], result.state["processed"]), (1, 2))
        self.assertEqual(
            result.state["skips"],
            [{"n": 1, "title": "(untitled)", "source": "Northwind Books", "reason": "no title"}],
        )


class CollectEntriesTests(SimpleTestCase):
    def page(self, source: str, *entries: dict[str, Any]) -> dict[str, Any]:
        return {"source": source, "name": source.title(), "entries": list(entries)}

    def test_numbers_items_normalises_isbns_and_marks_problems(self) -> None:
        state = collect_entries(
            {
                "pages": [
                    self.page(
                        "a",
                        {"title": " Emma ", "author": "Jane Austen", "isbn": "978-0-14-143958-7"},
                        {"title": "Emma", "author": "J. Austen", "isbn": "9780141439587"},
                        {"title": "X", "author": "Y", "isbn": "12-34", "year": 2000},
                    ),
                    self.page(
                        "b",
                        {"title": "emma", "author": "jane austen"},
                        {"title": "Emma", "author": "Jane Austen"},
                        {"title": "Old", "author": "Z", "year": -5},
                    ),
                ]
            }
        )
        items = state["items"]
        self.assertEqual([i["n"] for i in items], [1, 2, 3, 4, 5, 6])
        self.assertEqual(state["total"], 6)
        self.assertEqual(state["phase"], "checking")
        self.assertEqual(items[0]["title"], "Emma")
        self.assertEqual(items[0]["isbn"], "9780141439587")
        self.assertEqual(
            [i["problem"] for i in items],
            [
                None,
                "duplicate of #1 from A",
                "invalid ISBN '12-34'",
                None,  # no ISBN: told apart from #1 by title and author ...
                "duplicate of #4 from B",  # ... which repeat here, whatever the case
                "implausible year -5",
            ],
        )
        self.assertEqual(
            state["pages"],
            [{"source": "a", "name": "A", "count": 3}, {"source": "b", "name": "B", "count": 3}],
        )


class FakeApiTests(SimpleTestCase):
    @override_settings(FAKE_API_LATENCY_MS=0, FAKE_API_FAILURE_RATE=0)
    def test_sync_book_succeeds_at_failure_rate_0(self) -> None:
        receipt = fake_api.sync_book(7, {"title": "Emma"})
        self.assertEqual(receipt["remote_id"], "bk-7")
        self.assertEqual(receipt["fields"], ["title"])

    @override_settings(FAKE_API_LATENCY_MS=0, FAKE_API_FAILURE_RATE=1)
    def test_sync_book_fails_at_failure_rate_1(self) -> None:
        with self.assertRaises(fake_api.FakeApiError) as caught:
            fake_api.sync_book(7, {})
        self.assertIn(str(caught.exception), fake_api.SYNC_ERRORS)

    @override_settings(FAKE_API_LATENCY_MS=0, FAKE_API_FAILURE_RATE=0.5)
    def test_seeding_the_rng_repeats_the_outcomes(self) -> None:
        def outcomes() -> list[bool]:
            fake_api.rng.seed(42)
            results = []
            for _ in range(20):
                try:
                    fake_api.sync_book(1, {})
                except fake_api.FakeApiError:
                    results.append(False)
                else:
                    results.append(True)
            return results

        first = outcomes()
        self.assertEqual(outcomes(), first)
        self.assertIn(True, first)
        self.assertIn(False, first)

    @override_settings(FAKE_API_LATENCY_MS=0)
    def test_catalogue_returns_copies(self) -> None:
        page = fake_api.fetch_catalogue("northwind")
        self.assertEqual(page["name"], "Northwind Books")
        page["entries"][0]["title"] = "changed"
        self.assertEqual(
            fake_api.fetch_catalogue("northwind")["entries"][0]["title"], "Pride and Prejudice"
        )
        with self.assertRaises(KeyError):
            fake_api.fetch_catalogue("nowhere")
        with self.assertRaises(KeyError):
            fake_api.acknowledge("nowhere")
