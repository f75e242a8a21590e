"""The demo's pages: live sync indicators, the import, and the running flows.

Saving a book starts or signals its sync flow on commit, and the flows use
the ORM from worker threads: TransactionTestCase, so both see committed rows.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any
from unittest import mock

from django.test import Client, TransactionTestCase, override_settings
from django.urls import reverse

import caravela_flow
from caravela_flow import FlowHandle, FlowNotFound, get_state, signal, stop
from caravela_flow.api import backend
from caravela_flow.testing import FlowProbe, start_probe
from caravela_flow.tokens import read_token
from demo_site.library import sync
from demo_site.library.flows import BookImportFlow, BookSyncFlow
from demo_site.library.models import Book

WS_URL = re.compile(r"caravelaFlow\('(/ws/flows/([^/']+)/)'\)")


def subscribed_flow_ids(html: str) -> list[str]:
    """The flow ids of the caravelaFlow(...) components on a page (tokens checked)."""
    return [read_token(token) for _, token in WS_URL.findall(html)]


class ProbedStarts:
    """Patches ``start`` in a module so each flow it starts gets a FlowProbe."""

    def __init__(self, target: str) -> None:
        self.probes: list[FlowProbe] = []
        self.patcher = mock.patch(target, side_effect=self._start)

    def _start(
        self, flows_class: Any, name: str, initial_state: Any = None, key: str | None = None
    ) -> FlowHandle:
        probe = FlowProbe()
        probe.handle = caravela_flow.start(flows_class, name, initial_state, probe, key=key)
        self.probes.append(probe)
        return probe.handle

    def __enter__(self) -> ProbedStarts:
        self.patcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.patcher.stop()


class DemoViewTestCase(TransactionTestCase):
    def setUp(self) -> None:
        sync.forget_all()
        self.addCleanup(sync.forget_all)

    def stop_later(self, handle: FlowHandle | str) -> None:
        def stop_quietly() -> None:
            with contextlib.suppress(FlowNotFound):
                stop(handle)

        self.addCleanup(stop_quietly)

    def create_book(self, **fields: Any) -> Book:
        data = {"title": "Kindred", "author": "Octavia E. Butler", "isbn": "", "year": ""}
        data.update(fields)
        response = self.client.post(reverse("library:book_create"), data)
        self.assertRedirects(response, reverse("library:book_list"))
        return Book.objects.get(title=data["title"])


@override_settings(FAKE_API_LATENCY_MS=5, FAKE_API_FAILURE_RATE=0)
class BookSyncViewTests(DemoViewTestCase):
    def test_creating_a_book_starts_its_sync_flow(self) -> None:
        with ProbedStarts("demo_site.library.sync.start") as starts:
            book = self.create_book()
            [probe] = starts.probes
            state = probe.wait_state({"syncs": 1})
        assert probe.handle is not None
        self.assertEqual(sync.known_books(), {book.pk: probe.handle})
        self.assertEqual(state["book_id"], book.pk)
        self.assertEqual(probe.handle.flow, BookSyncFlow.sync_book.key)
        book.refresh_from_db()
        self.assertEqual(book.sync_version, 1)

    def test_the_list_follows_the_sync_flows(self) -> None:
        book = self.create_book()
        handle = sync.known_books()[book.pk]
        Book.objects.create(title="Emma", author="Jane Austen")  # saved outside the views
        response = self.client.get(reverse("library:book_list"))
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        self.assertEqual(subscribed_flow_ids(html), [handle.id])
        self.assertIn(f'data-book="{book.pk}" data-phase="connecting"', html)
        self.assertContains(response, "Never synced")  # Emma has no flow
        self.assertContains(response, "$syncView(status, state, reason, connection).label")

    def test_editing_a_book_signals_its_flow(self) -> None:
        with ProbedStarts("demo_site.library.sync.start") as starts:
            book = self.create_book()
            [probe] = starts.probes
            probe.wait_state({"syncs": 1})
            response = self.client.post(
                reverse("library:book_edit", args=[book.pk]),
                {"title": "Kindred", "author": "Octavia E. Butler", "isbn": "", "year": "1979"},
            )
            self.assertRedirects(response, reverse("library:book_list"))
            state = probe.wait_state({"syncs": 2})
            self.assertEqual(len(starts.probes), 1, "the edit reused the book's flow")
        self.assertEqual(sync.known_books(), {book.pk: probe.handle})
        self.assertEqual([s["dirty"] for s in probe.states].count(True), 2)
        self.assertEqual(state["sync_version"], 2)
        book.refresh_from_db()
        self.assertEqual((book.year, book.sync_version), (1979, 2))

    def test_an_invalid_edit_does_not_signal(self) -> None:
        book = Book.objects.create(title="Kindred", author="Octavia E. Butler")
        response = self.client.post(
            reverse("library:book_edit", args=[book.pk]), {"title": "", "author": "x"}
        )
        self.assertEqual(response.status_code, 200)
        # The page follows the book's flow (started to show it), which was not signalled.
        self.assertIs(get_state(sync.known_books()[book.pk])["dirty"], False)

    def test_an_edit_after_the_flow_is_gone_starts_a_new_one(self) -> None:
        book = self.create_book()
        first = sync.known_books()[book.pk]
        stop(first)
        self.client.post(
            reverse("library:book_edit", args=[book.pk]),
            {"title": "Kindred", "author": "Octavia E. Butler", "year": "1979"},
        )
        second = sync.known_books()[book.pk]
        self.assertNotEqual(second.id, first.id)
        self.assertEqual(get_state(second)["book_id"], book.pk)
        with self.assertRaises(FlowNotFound):
            signal(first, {"dirty": True})

    def test_the_edit_page_shows_the_indicator_and_a_sync_button(self) -> None:
        book = self.create_book()
        url = reverse("library:book_edit", args=[book.pk])
        response = self.client.get(url)
        html = response.content.decode()
        flow_id = sync.known_books()[book.pk].id
        [token] = re.findall(r'data-subscription-url="/ws/flows/([^/"]+)/"', html)
        self.assertEqual(read_token(token), flow_id)
        self.assertIn(
            f'data-caravela-flow-component="SyncIndicator" data-flow-id="{flow_id}"', html
        )
        self.assertContains(response, f'action="{reverse("library:book_sync", args=[book.pk])}"')

    def test_sync_now_marks_the_book_dirty(self) -> None:
        book = Book.objects.create(title="Kindred", author="Octavia E. Butler")
        sync_url = reverse("library:book_sync", args=[book.pk])
        self.assertEqual(self.client.get(sync_url).status_code, 405)
        with ProbedStarts("demo_site.library.sync.start") as starts:
            response = self.client.post(sync_url, follow=True)
            self.assertRedirects(response, reverse("library:book_edit", args=[book.pk]))
            [probe] = starts.probes
            probe.wait_state({"syncs": 1})
        self.assertContains(response, "Sync of “Kindred” requested.")
        self.assertEqual(
            self.client.post(reverse("library:book_sync", args=[9999])).status_code, 404
        )

    def test_deleting_a_book_stops_its_flow(self) -> None:
        with ProbedStarts("demo_site.library.sync.start") as starts:
            book = self.create_book()
            [probe] = starts.probes
        response = self.client.post(reverse("library:book_delete", args=[book.pk]))
        self.assertRedirects(response, reverse("library:book_list"))
        final = probe.wait_end()
        self.assertEqual(final["type"], "flow.stopped")
        self.assertEqual(sync.known_books(), {})

    def test_the_list_drops_flows_that_are_no_longer_retained(self) -> None:
        book = self.create_book()
        handle = sync.known_books()[book.pk]
        stop(handle)
        with mock.patch.object(sync, "get_state", side_effect=FlowNotFound("gone")):
            response = self.client.get(reverse("library:book_list"))
        self.assertEqual(subscribed_flow_ids(response.content.decode()), [])
        self.assertEqual(sync.known_books(), {})


@override_settings(FAKE_API_LATENCY_MS=5, FAKE_API_FAILURE_RATE=0, FAKE_API_IMPORT_FAILURE_RATE=0)
class ImportViewTests(DemoViewTestCase):
    def test_the_import_page_has_a_form(self) -> None:
        response = self.client.get(reverse("library:import_start"))
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "csrfmiddlewaretoken")
        self.assertContains(response, "Old Stacks Archive")
        self.assertContains(response, "<td>8 ms</td>", html=True)  # 5 ms x 1.6

    def test_starting_an_import_redirects_to_its_progress(self) -> None:
        with ProbedStarts("demo_site.library.views.start") as starts:
            response = self.client.post(reverse("library:import_start"))
            [probe] = starts.probes
        assert probe.handle is not None
        self.stop_later(probe.handle)
        progress_url = reverse("library:import_progress", args=[probe.handle.id])
        self.assertRedirects(response, progress_url)
        self.assertEqual(probe.handle.flow, BookImportFlow.import_books.key)
        final = probe.wait_end(timeout=15)
        self.assertEqual(final["type"], "flow.done")
        response = self.client.get(progress_url)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(subscribed_flow_ids(response.content.decode()), [probe.handle.id])
        self.assertContains(response, '<dd data-counter="created"', count=1)
        self.assertContains(response, "$importView(status, state, reason).label")

    def test_the_import_form_needs_a_csrf_token(self) -> None:
        def imports() -> set[str]:
            return {f.id for f in backend().flows() if f.flow == BookImportFlow.import_books.key}

        before = imports()
        client = Client(enforce_csrf_checks=True)
        response = client.post(reverse("library:import_start"))
        self.assertEqual(response.status_code, 403)
        self.assertEqual(imports(), before)

    def test_progress_of_an_unknown_or_foreign_flow_is_404(self) -> None:
        self.assertEqual(self.client.get("/import/not-a-flow-id/").status_code, 404)
        self.assertEqual(self.client.get(f"/import/{'0' * 32}/").status_code, 404)
        book = Book.objects.create(title="Emma", author="Jane Austen")
        handle = sync.mark_dirty(book.pk)
        url = reverse("library:import_progress", args=[handle.id])
        self.assertEqual(self.client.get(url).status_code, 404)


@override_settings(FAKE_API_LATENCY_MS=5, FAKE_API_FAILURE_RATE=0)
class FlowListViewTests(DemoViewTestCase):
    def test_lists_the_flows_with_a_stop_button_for_running_ones(self) -> None:
        book = Book.objects.create(title="Emma", author="Jane Austen")
        # Not marked dirty: it stays idle, so its version holds still.
        probe = start_probe(BookSyncFlow, "sync_book", {"book_id": book.pk})
        handle = probe.handle
        assert handle is not None
        self.stop_later(handle)
        signal(handle, {"note": "a state change, version 1"})
        # Applied once the flow's first step (catching up with the book) is done.
        probe.wait_state({"note": "a state change, version 1"})
        response = self.client.get(reverse("library:flow_list"))
        self.assertEqual(response.status_code, 200)
        row = re.search(
            rf'<tr id="flow-{handle.id}" data-status="running">(.*?)</tr>',
            response.content.decode(),
            re.S,
        )
        assert row is not None, "the sync flow is not listed as running"
        self.assertIn("BookSyncFlow.sync_book", row.group(1))
        self.assertIn("“Emma”", row.group(1))
        self.assertIn(reverse("library:book_edit", args=[book.pk]), row.group(1))
        self.assertIn(reverse("library:flow_stop", args=[handle.id]), row.group(1))
        self.assertIn("csrfmiddlewaretoken", row.group(1))
        self.assertIn('<td data-label="Version">1</td>', row.group(1))

    def test_the_stop_button_stops_the_flow(self) -> None:
        book = Book.objects.create(title="Emma", author="Jane Austen")
        handle = sync.mark_dirty(book.pk)
        stop_url = reverse("library:flow_stop", args=[handle.id])
        self.assertEqual(self.client.get(stop_url).status_code, 405)
        response = self.client.post(stop_url, follow=True)
        self.assertRedirects(response, reverse("library:flow_list"))
        self.assertContains(response, f"Stopped flow {handle.id[:8]}")
        self.assertContains(response, f'<tr id="flow-{handle.id}" data-status="stopped">')
        self.assertNotContains(response, f'action="{stop_url}"')
        with self.assertRaises(FlowNotFound):
            signal(handle, {"dirty": True})
        # A second press finds the flow already ended.
        response = self.client.post(stop_url, follow=True)
        self.assertContains(response, "had already ended")

    def test_stopping_needs_a_csrf_token(self) -> None:
        book = Book.objects.create(title="Emma", author="Jane Austen")
        handle = sync.mark_dirty(book.pk)
        client = Client(enforce_csrf_checks=True)
        response = client.post(reverse("library:flow_stop", args=[handle.id]))
        self.assertEqual(response.status_code, 403)
        self.assertEqual(get_state(handle)["book_id"], book.pk)
        signal(handle, {"dirty": True})  # still running

    def test_lists_imports_with_a_link_to_their_progress(self) -> None:
        with ProbedStarts("demo_site.library.views.start") as starts:
            self.client.post(reverse("library:import_start"))
            [probe] = starts.probes
        assert probe.handle is not None
        probe.wait_end(timeout=15)
        response = self.client.get(reverse("library:flow_list"))
        self.assertContains(response, f'<tr id="flow-{probe.handle.id}" data-status="done">')
        self.assertContains(response, reverse("library:import_progress", args=[probe.handle.id]))
        self.assertContains(response, "import, done: 15 created")

    def test_unknown_flows(self) -> None:
        self.assertEqual(self.client.post("/flows/nope/stop/").status_code, 404)
        response = self.client.post(f"/flows/{'0' * 32}/stop/", follow=True)
        self.assertContains(response, "had already ended")

    def test_the_nav_links_to_every_page(self) -> None:
        response = self.client.get(reverse("library:flow_list"))
        for name in ("book_list", "book_create", "import_start", "flow_list"):
            self.assertContains(response, f'href="{reverse(f"library:{name}")}"')
        self.assertContains(response, 'aria-current="page">Running flows</a>')
