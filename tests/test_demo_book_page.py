"""The book page's parts: autosave, the outage switch, the friendly page when flows are
unreachable, and imported books being synced."""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

from django.test import TransactionTestCase, override_settings
from django.urls import reverse

from caravela_flow import FlowUnreachable, NoWorkerAvailable, get_state
from caravela_flow.testing import start_probe
from demo_site.library import fake_api, sync
from demo_site.library.flows import BookImportFlow
from demo_site.library.models import Book

JSON = {"HTTP_ACCEPT": "application/json"}


@override_settings(FAKE_API_LATENCY_MS=5, FAKE_API_FAILURE_RATE=0, FAKE_API_IMPORT_FAILURE_RATE=0)
class BookPageTests(TransactionTestCase):
    def setUp(self) -> None:
        sync.forget_all()
        self.addCleanup(sync.forget_all)
        fake_api.clear_conditions()
        self.addCleanup(fake_api.clear_conditions)
        self.book = Book.objects.create(title="Kindred", author="Octavia E. Butler")

    def autosave(self, **fields: Any) -> Any:
        data = {"title": "Kindred", "author": "Octavia E. Butler", "isbn": "", "year": ""}
        data.update(fields)
        return self.client.post(reverse("library:book_autosave", args=[self.book.pk]), data, **JSON)

    def test_opening_the_page_starts_an_idle_flow_with_the_last_sync_on_record(self) -> None:
        Book.objects.filter(pk=self.book.pk).update(sync_version=4)
        self.client.get(reverse("library:book_edit", args=[self.book.pk]))
        state = get_state(sync.known_books()[self.book.pk])
        self.assertEqual(
            (state["dirty"], state["book_id"], state["syncs"]), (False, self.book.pk, 0)
        )
        self.assertIsNotNone(state["started_at"])
        # A second visit follows the same flow.
        first = sync.known_books()[self.book.pk]
        self.client.get(reverse("library:book_edit", args=[self.book.pk]))
        self.assertEqual(sync.known_books()[self.book.pk], first)

    def test_a_burst_of_autosaves_is_one_sync(self) -> None:
        self.client.get(reverse("library:book_edit", args=[self.book.pk]))
        handle = sync.known_books()[self.book.pk]
        for title in ("K", "Ki", "Kin", "Kindred!"):
            response = self.autosave(title=title)
            self.assertEqual(response.status_code, 200)
            self.assertTrue(response.json()["saved"])
            self.assertTrue(response.json()["subscription_url"].startswith("/ws/flows/"))
        self.book.refresh_from_db()
        self.assertEqual(self.book.title, "Kindred!")
        state = self.wait_synced(handle)
        self.assertEqual(state["syncs"], 1)
        self.assertEqual(Book.objects.get(pk=self.book.pk).sync_version, 1)

    def wait_synced(self, handle: Any) -> dict[str, Any]:
        """The flow's state once it has synced and nothing is pending (polled, 10 s at most)."""
        for _ in range(500):
            state = get_state(handle)
            if state["syncs"] and not state["dirty"]:
                return state
            time.sleep(0.02)
        self.fail(f"not synced: {state}")

    def test_an_invalid_autosave_says_why_and_saves_nothing(self) -> None:
        response = self.autosave(title="", isbn="12")
        self.assertEqual(response.status_code, 400)
        errors = response.json()["errors"]
        self.assertEqual(sorted(errors), ["isbn", "title"])
        self.assertEqual(Book.objects.get(pk=self.book.pk).title, "Kindred")

    def test_autosave_needs_post_and_csrf(self) -> None:
        url = reverse("library:book_autosave", args=[self.book.pk])
        self.assertEqual(self.client.get(url).status_code, 405)
        self.client.handler.enforce_csrf_checks = True
        self.assertEqual(self.autosave().status_code, 403)
        self.assertEqual(
            self.client.post(reverse("library:fake_api"), {"action": "reset"}).status_code, 403
        )

    def test_the_outage_switch_applies_at_once_and_resets(self) -> None:
        url = reverse("library:fake_api")
        response = self.client.post(url, {"failure_rate": "0.5", "latency_ms": "40"}, **JSON)
        self.assertEqual(
            response.json(), {"latency_ms": 40.0, "failure_rate": 0.5, "switched": True}
        )
        response = self.client.post(
            url, {"action": "outage", "failure_rate": "0", "latency_ms": "40"}, **JSON
        )
        self.assertEqual(response.json()["failure_rate"], 1.0)
        with self.assertRaises(fake_api.FakeApiError):
            fake_api.sync_book(1, {})
        self.assertEqual(fake_api.latency_ms(), 40.0)
        response = self.client.post(url, {"action": "reset"}, **JSON)
        self.assertEqual(
            response.json(), {"latency_ms": 5.0, "failure_rate": 0.0, "switched": False}
        )
        self.assertEqual(self.client.post(url, {"failure_rate": "x"}, **JSON).status_code, 400)
        # Without JavaScript: a redirect back, never to another site.
        response = self.client.post(url, {"action": "reset", "next": "https://evil.example/"})
        self.assertRedirects(response, reverse("library:book_list"))
        page = reverse("library:book_edit", args=[self.book.pk])
        response = self.client.post(url, {"action": "reset", "next": page})
        self.assertRedirects(response, page)

    def test_no_worker_gives_a_page_that_says_what_to_run(self) -> None:
        with mock.patch.object(sync, "start", side_effect=NoWorkerAvailable("no worker answered")):
            response = self.client.get(reverse("library:book_edit", args=[self.book.pk]))
            self.assertEqual(response.status_code, 503)
            self.assertContains(response, "runworker caravela-flows", status_code=503)
            self.assertContains(response, "make demo-workers", status_code=503)
            response = self.autosave(title="Kindred 2")
        self.assertEqual(response.status_code, 503)
        self.assertIn("runworker caravela-flows", response.json()["error"])

    def test_an_unreachable_flow_gives_the_page_too(self) -> None:
        with mock.patch.object(sync, "flow_snapshot", side_effect=FlowUnreachable("gone")):
            sync._flows[self.book.pk] = sync.start_flow(self.book.pk)
            response = self.client.get(reverse("library:book_edit", args=[self.book.pk]))
        # An unreachable flow is replaced (the page gets a new one), not an error.
        self.assertEqual(response.status_code, 200)

    def test_imported_books_get_synced(self) -> None:
        probe = start_probe(BookImportFlow, "import_books")
        final = probe.wait_end(timeout=15)
        self.assertEqual(final["type"], "flow.done", final)
        imported = {book["id"] for book in final["state"]["imported"]}
        self.assertEqual(set(sync.known_books()) - {self.book.pk}, imported)
        for book_id in imported:
            self.wait_synced(sync.known_books()[book_id])
        self.assertFalse(Book.objects.filter(pk__in=imported, synced_at=None).exists())
