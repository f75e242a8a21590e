"""The demo in a real browser: headless Chromium (Playwright) against daphne.

ChannelsLiveServerTestCase forks a daphne server in setUpClass, after the
class's override_settings took effect, so the server sees the fake API
settings below. Its flows, channel layer (in memory) and WebSockets all live
in that child process; the test reads the shared SQLite test database.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import skipUnless

from asgiref.sync import SyncToAsync
from channels.testing import ChannelsLiveServerTestCase
from daphne.testing import DaphneProcess
from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from demo_site.library import sync
from demo_site.library.models import Book

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - playwright is in requirements.txt
    sync_playwright = None  # type: ignore[assignment]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"
LATENCY_MS = 400
#: Screenshots the browser tests take (test artifacts; not committed).
ARTIFACTS = Path(os.environ.get("CARAVELA_FLOW_ARTIFACTS", Path(__file__).parent / "artifacts"))
ARTIFACTS.mkdir(parents=True, exist_ok=True)

# Runs before any script of every page: records the values that each book's
# sync indicator (data-phase) and the import's "created" counter go through.
RECORDER = """
(() => {
  const oldPhases = {};
  const created = [];
  const keyOf = (el) => `${el.dataset.book}/${el.dataset.indicator || "alpine"}`;
  // The phases one book's indicator went through (Alpine's unless `indicator` says "svelte").
  window.phaseLog = (book, indicator = "alpine") => {
    const el = [...document.querySelectorAll(`.sync[data-book="${book}"]`)]
      .find((e) => (e.dataset.indicator || "alpine") === indicator);
    const key = `${book}/${indicator}`;
    const values = [...(oldPhases[key] || []), el ? el.getAttribute("data-phase") : null];
    return values.filter((v, i) => v !== null && v !== values[i - 1]);
  };
  window.createdLog = () => created.slice();
  const labels = {};
  // The labels one book's indicator showed, in order.
  window.labelLog = (book, indicator = "alpine") => (labels[`${book}/${indicator}`] || []).slice();
  const noteLabel = (node) => {
    const el = node && (node.nodeType === 1 ? node : node.parentElement);
    const sync = el && el.closest(".sync[data-book]");
    const badge = sync && sync.querySelector(".sync-badge");
    if (!badge) return;
    const log = (labels[keyOf(sync)] ||= []);
    if (log.at(-1) !== badge.textContent) log.push(badge.textContent);
  };
  const observer = new MutationObserver((records) => {
    for (const record of records) {
      const el = record.target;
      if (record.type === "attributes" && el.matches(".sync[data-book]")) {
        (oldPhases[keyOf(el)] ||= []).push(record.oldValue);
      }
      noteLabel(el);
      for (const added of record.addedNodes || []) if (added.nodeType === 1) {
        noteLabel(added);
        added.querySelectorAll?.(".sync-badge").forEach(noteLabel);
      }
      const counter = el.nodeType === 1 ? el.closest('[data-counter="created"]') : null;
      if (counter && counter.textContent !== created.at(-1)) created.push(counter.textContent);
    }
  });
  document.addEventListener("DOMContentLoaded", () => {
    observer.observe(document.body, {
      subtree: true, childList: true, characterData: true,
      attributes: true, attributeFilter: ["data-phase"], attributeOldValue: true,
    });
  });
})();
"""


class FreshDaphneProcess(DaphneProcess):  # type: ignore[misc]
    """The daphne child, with a working asgiref executor.

    A fork copies thread pools without their threads. asgiref's shared
    ``SyncToAsync`` executor (behind ``database_sync_to_async``, which
    ``AuthMiddlewareStack`` uses on every WebSocket handshake) would queue work
    forever once an earlier test in this process has used it.
    """

    def run(self) -> None:
        SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)
        super().run()


def ordered_suffix(values: list[str], sequence: list[str]) -> bool:
    """Whether ``values`` is a non-empty tail of ``sequence``."""
    return bool(values) and sequence[-len(values) :] == values


def create_sync_and_delete(page: Page, base_url: str, title: str) -> None:
    """Add a book through the form, watch it sync from the list, delete it: its flow stops."""
    page.goto(f"{base_url}/books/new/")
    page.fill("#id_title", title)
    page.fill("#id_author", "Ursula K. Le Guin")
    page.click("button:has-text('Save')")
    page.wait_for_url(f"{base_url}/")
    book = Book.objects.get(title=title)
    indicator = page.locator(f'.sync[data-book="{book.pk}"]')
    expect(indicator).to_have_attribute("data-phase", "synced", timeout=15_000)
    flow_id = indicator.get_attribute("data-flow-id")

    page.goto(f"{base_url}/books/{book.pk}/delete/")
    page.get_by_role("button", name="Yes, delete it").click()
    page.wait_for_url(f"{base_url}/")
    expect(page.locator(".message")).to_contain_text(f"Deleted “{title}”.")
    expect(page.get_by_role("link", name=title)).to_have_count(0)
    assert not Book.objects.filter(pk=book.pk).exists()
    # The deleted book's flow was stopped: the dashboard lists it as stopped.
    page.goto(f"{base_url}/flows/")
    row = page.locator(f"tbody:visible tr#flow-{flow_id}")
    expect(row).to_contain_text(f"book:{book.pk}")
    expect(row).to_have_attribute("data-status", "stopped", timeout=10_000)


@skipUnless(os.path.exists(CHROMIUM), f"{CHROMIUM} is missing (make deps-system installs it)")
@skipUnless(sync_playwright is not None, "the playwright package is not installed")
@override_settings(
    FAKE_API_LATENCY_MS=LATENCY_MS, FAKE_API_FAILURE_RATE=0, FAKE_API_IMPORT_FAILURE_RATE=0
)
class DemoInBrowserTests(ChannelsLiveServerTestCase):  # type: ignore[misc]
    ProtocolServerProcess = FreshDaphneProcess
    serve_static = True

    @classmethod
    def setUpClass(cls) -> None:
        # Playwright's sync API runs an event loop in this thread; Django's ORM
        # (the test's own queries, the database flush) would refuse to run.
        previous = os.environ.get(ASYNC_UNSAFE)
        os.environ[ASYNC_UNSAFE] = "true"
        cls.addClassCleanup(cls._restore_env, previous)
        # The server is a fork of this process: hand it an empty book → flow table.
        sync.forget_all()
        super().setUpClass()

    @staticmethod
    def _restore_env(previous: str | None) -> None:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous

    def setUp(self) -> None:
        alpine = Path(settings.ALPINEJS_DIST) / "module.esm.min.js"
        self.assertTrue(alpine.is_file(), f"{alpine} is missing: run `make node-deps`")
        manifest = Path(settings.VITE_DIST) / "manifest.json"
        self.assertTrue(manifest.is_file(), f"{manifest} is missing: run `make js`")
        # Playwright starts and stops with each test: while it runs, this thread
        # has a running event loop, which fixtures that use async_to_sync refuse.
        assert sync_playwright is not None
        playwright = sync_playwright().start()
        self.addCleanup(playwright.stop)
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.addCleanup(self.browser.close)
        self.errors: list[str] = []
        self.page = self.new_page()

    def new_page(self) -> Page:
        page = self.browser.new_page()
        self.addCleanup(page.close)
        page.add_init_script(RECORDER)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        return page

    def url(self, name: str, *args: Any) -> str:
        return f"{self.live_server_url}{reverse(name, args=args)}"

    def test_book_sync_status_is_live(self) -> None:
        page = self.page
        page.goto(self.url("library:book_create"))
        page.fill("#id_title", "Kindred")
        page.fill("#id_author", "Octavia E. Butler")
        page.fill("#id_isbn", "978-0-8070-8369-7")
        page.click("button:has-text('Save')")
        page.wait_for_url(self.url("library:book_list"))
        book = Book.objects.get(title="Kindred")
        indicator = page.locator(f'.sync[data-book="{book.pk}"]')

        # The new book syncs while the list is open: no reload, the flow pushes.
        expect(indicator).to_have_attribute("data-phase", "synced", timeout=10_000)
        expect(indicator.locator(".sync-badge")).to_contain_text("Synced at ")
        expect(indicator.locator(".sync-detail")).to_have_text("version 1")
        # Depending on how fast the page connected it saw the debounce or not.
        first = [p for p in page.evaluate(f"phaseLog({book.pk})") if p != "connecting"]
        self.assertTrue(ordered_suffix(first, ["pending", "syncing", "synced"]), first)
        page.evaluate("window.notReloaded = true")

        # Edit the book in another tab: this page shows every phase of the new sync.
        editor = self.new_page()
        editor.goto(self.url("library:book_edit", book.pk))
        editor.fill("#id_year", "1979")
        editor.click("button:has-text('Save')")
        editor.wait_for_url(self.url("library:book_list"))
        expect(indicator.locator(".sync-detail")).to_have_text("version 2", timeout=10_000)
        phases = [p for p in page.evaluate(f"phaseLog({book.pk})") if p != "connecting"]
        self.assertEqual(phases[len(first) :], ["pending", "syncing", "synced"])
        self.assertTrue(page.evaluate("window.notReloaded"))
        book.refresh_from_db()
        self.assertEqual((book.year, book.sync_version), (1979, 2))

        # Stop the book's flow from the running-flows page: the list sees it end.
        editor.goto(self.url("library:flow_list"))
        expect(editor.locator(".dashboard")).to_have_attribute("data-loaded", "true")
        # By its flow: an earlier test's flow may name a book of the same pk.
        row = editor.locator(f"tbody:visible tr#flow-{indicator.get_attribute('data-flow-id')}")
        expect(row).to_contain_text("Kindred")
        row.get_by_role("button", name="Stop").click()
        expect(editor.locator(".message")).to_contain_text("Stopped flow")
        expect(indicator).to_have_attribute("data-phase", "stopped", timeout=5_000)
        expect(indicator.locator(".sync-badge")).to_have_text("Sync stopped")
        self.assertEqual(self.errors, [])

    def test_svelte_and_alpine_indicators_follow_one_flow(self) -> None:
        page = self.page
        page.goto(self.url("library:book_create"))
        page.fill("#id_title", "Dune")
        page.fill("#id_author", "Frank Herbert")
        page.click("button:has-text('Save')")
        page.wait_for_url(self.url("library:book_list"))
        book = Book.objects.get(title="Dune")
        expect(page.locator(f'.sync[data-book="{book.pk}"]')).to_have_attribute(
            "data-phase", "synced", timeout=10_000
        )

        page.goto(self.url("library:book_edit", book.pk))
        alpine = page.locator('.sync[data-indicator="alpine"]')
        svelte = page.locator('.sync[data-indicator="svelte"]')
        # The Svelte component's first paint is the snapshot embedded in the page.
        self.assertEqual(page.evaluate(f"phaseLog({book.pk}, 'svelte')")[:1], ["synced"])
        for indicator in (alpine, svelte):
            expect(indicator.locator(".sync-detail")).to_have_text("version 1")

        editor = self.new_page()
        editor.goto(self.url("library:book_edit", book.pk))
        editor.fill("#id_year", "1965")
        editor.click("button:has-text('Save')")
        editor.wait_for_url(self.url("library:book_list"))
        for indicator in (alpine, svelte):
            expect(indicator.locator(".sync-detail")).to_have_text("version 2", timeout=10_000)
            expect(indicator.locator(".sync-badge")).to_contain_text("Synced at ")
        self.assertEqual(self.errors, [])

    def indicators(self, page: Page) -> list[Any]:
        return [page.locator(f'.sync[data-indicator="{name}"]') for name in ("alpine", "svelte")]

    def test_typing_is_saved_and_synced_once_live_in_every_tab(self) -> None:
        book = Book.objects.create(title="Kindred", author="Octavia E. Butler")
        page = self.page
        page.goto(self.url("library:book_edit", book.pk))
        # A second tab, opened before the book's first edit.
        other = self.new_page()
        other.goto(self.url("library:book_edit", book.pk))
        for tab in (page, other):
            for indicator in self.indicators(tab):
                expect(indicator).to_have_attribute("data-phase", "idle")
        page.evaluate("window.notReloaded = true")

        page.locator("#id_title").press("End")
        page.locator("#id_title").press_sequentially(" (1979)", delay=40)
        expect(page.locator(".autosave-status")).to_have_text("Saved.")
        for tab in (page, other):
            for indicator in self.indicators(tab):
                expect(indicator).to_have_attribute("data-phase", "synced", timeout=10_000)
                expect(indicator.locator(".sync-detail")).to_have_text("version 1")
        for tab in (page, other):
            for name in ("alpine", "svelte"):
                phases = tab.evaluate(f"phaseLog({book.pk}, '{name}')")
                self.assertEqual(
                    [p for p in phases if p != "connecting"],
                    ["idle", "pending", "syncing", "synced"],
                    (name, phases),
                )
        self.assertTrue(page.evaluate("window.notReloaded"))
        book.refresh_from_db()
        self.assertEqual((book.title, book.sync_version), ("Kindred (1979)", 1))
        page.screenshot(path=str(ARTIFACTS / "book-page.png"), full_page=True)

        # Reload in the middle of a sync: the page shows it, then how it ends.
        page.locator("#id_year").fill("1979")
        expect(self.indicators(page)[1]).to_have_attribute("data-phase", "syncing", timeout=5_000)
        page.reload()
        alpine, svelte = self.indicators(page)
        first = page.evaluate(f"phaseLog({book.pk}, 'svelte')")[0]
        self.assertIn(first, ["syncing", "synced"])
        for indicator in (alpine, svelte):
            expect(indicator.locator(".sync-detail")).to_have_text("version 2", timeout=10_000)
        self.assertEqual(self.errors, [])

    def test_outage_switch_fails_the_sync_and_back_on_it_syncs(self) -> None:
        book = Book.objects.create(title="Kindred", author="Octavia E. Butler")
        page = self.page
        page.goto(self.url("library:book_edit", book.pk))
        page.get_by_role("button", name="API down").click()
        expect(page.locator(".outage-state")).to_contain_text("Switched: failure rate 1")
        try:
            page.locator("#id_year").fill("1979")
            for indicator in self.indicators(page):
                expect(indicator.locator(".sync-badge")).to_have_text(
                    re.compile(r"Retrying \(attempt [234] of 4\)"), timeout=10_000
                )
            for indicator in self.indicators(page):
                expect(indicator).to_have_attribute("data-phase", "failed", timeout=15_000)
                expect(indicator.locator(".sync-detail")).to_contain_text(
                    "retries exhausted · after 4 attempts"
                )
        finally:
            page.get_by_role("button", name="Back to normal").click()
        expect(page.locator(".outage-state")).to_contain_text("From the settings")
        for name in ("alpine", "svelte"):
            labels = page.evaluate(f"labelLog({book.pk}, '{name}')")
            self.assertIn("Retrying (attempt 4 of 4)", labels)
            self.assertFalse([x for x in labels if "attempt 5" in x], labels)
            self.assertEqual(labels[-1], "Sync failed", labels)

        # The next edit starts a new flow, and both indicators follow it.
        page.locator("#id_year").fill("1980")
        for indicator in self.indicators(page):
            expect(indicator).to_have_attribute("data-phase", "synced", timeout=10_000)
        book.refresh_from_db()
        self.assertEqual((book.year, book.sync_version), (1980, 1))
        self.assertEqual(self.errors, [])

    def test_dashboard_is_live_and_stops_flows(self) -> None:
        book = Book.objects.create(title="The Dispossessed", author="Ursula K. Le Guin")
        dashboard = self.page
        dashboard.goto(self.url("library:flow_list"))
        expect(dashboard.locator(".dashboard")).to_have_attribute("data-loaded", "true")

        # A flow started elsewhere appears without a reload, in words, with its key and step.
        editor = self.new_page()
        editor.goto(self.url("library:book_edit", book.pk))
        row = dashboard.locator("tbody:visible tr", has_text="The Dispossessed")
        expect(row).to_contain_text("Book sync", timeout=5_000)
        expect(row).to_contain_text(f"book:{book.pk}")
        expect(row).to_have_attribute("data-status", "running")
        expect(row.locator('[data-label="Step"]')).to_have_text("waiting for an edit")
        expect(row.locator('[data-label="Age"]')).to_have_text(re.compile(r"^\d+ s$"))
        editor.locator("#id_year").fill("1979")
        expect(row.locator('[data-label="Step"]')).to_contain_text(
            "pushing to the API", timeout=5_000
        )
        expect(row.locator('[data-label="Step"]')).to_have_text("waiting for an edit")
        dashboard.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        row.get_by_role("button", name="Stop").click()
        expect(dashboard.locator(".message")).to_contain_text("Stopped flow")
        expect(row).to_have_attribute("data-status", "stopped")
        expect(row.get_by_role("button", name="Stop")).to_be_hidden()
        for indicator in self.indicators(editor):
            expect(indicator).to_have_attribute("data-phase", "stopped")

        # The import shows up as "Book import" and ends as done.
        other = self.new_page()
        other.goto(self.url("library:import_start"))
        other.click("button:has-text('Start the import')")
        other.wait_for_url(re.compile(r"/import/[0-9a-f]{32}/$"))
        import_id = other.url.rstrip("/").rsplit("/", 1)[-1]
        imports = dashboard.locator(f"tbody:visible tr#flow-{import_id}")
        expect(imports).to_contain_text("Book import", timeout=5_000)
        expect(imports).to_have_attribute("data-status", "done", timeout=20_000)
        self.assertEqual(self.errors, [])

    def test_import_progress_is_live(self) -> None:
        page = self.page
        page.goto(self.url("library:import_start"))
        # The server process got this class's settings: 400 ms x 1.6 for this feed.
        expect(page.locator("tr", has_text="Old Stacks Archive")).to_contain_text("640 ms")
        page.click("button:has-text('Start the import')")
        page.wait_for_url(re.compile(r"/import/[0-9a-f]{32}/$"))

        status = page.locator(".import-status")
        expect(status).to_have_text("Done: 15 created, 7 skipped", timeout=20_000)
        expect(status).to_have_attribute("data-phase", "done")
        expect(page.locator('[data-counter="created"]')).to_have_text("15")
        expect(page.locator('[data-counter="skipped"]')).to_have_text("7")
        expect(page.locator('[data-counter="total"]')).to_have_text("22")
        bar = page.get_by_role("progressbar")
        expect(bar).to_have_attribute("aria-valuenow", "22")
        expect(bar).to_have_attribute("aria-valuemax", "22")
        skips = page.locator(".skips li")
        expect(skips).to_have_count(7)
        expect(skips.filter(has_text="Wuthering Heights")).to_contain_text(
            "invalid ISBN '978-0-14-143955'"
        )
        expect(skips.filter(has_text="Moby-Dick")).to_contain_text("duplicate of #2")
        expect(page.get_by_role("link", name="See the books")).to_be_visible()

        # The counter climbed book by book while the page watched.
        created = [int(n) for n in page.evaluate("createdLog()")]
        self.assertEqual(created, sorted(created))
        self.assertGreaterEqual(len(created), 5, created)
        self.assertEqual(created[-1], 15)
        self.assertEqual(Book.objects.count(), 15)
        self.assertEqual(self.errors, [])

    def test_every_page_fits_a_phone_screen(self) -> None:
        """At 390 px wide (a phone), no page scrolls sideways and the nav stays on one line."""
        book = Book.objects.create(
            title="A Very Long Title About Distributed Systems and Their Many Failures",
            author="Somebody With An Extraordinarily Long Name",
            isbn="9780141439556",
            year=1999,
        )
        page = self.browser.new_page(viewport={"width": 390, "height": 844})
        self.addCleanup(page.close)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.goto(self.url("library:import_start"))
        page.click("button:has-text('Start the import')")
        page.wait_for_url(re.compile(r"/import/[0-9a-f]{32}/$"))
        expect(page.locator(".import-status")).to_have_text(
            "Done: 15 created, 7 skipped", timeout=20_000
        )
        pages = {
            "import progress": page.url,
            "book list": self.url("library:book_list"),
            "new book": self.url("library:book_create"),
            "book page": self.url("library:book_edit", book.pk),
            "import": self.url("library:import_start"),
            "running flows": self.url("library:flow_list"),
        }
        for name, url in pages.items():
            page.goto(url)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(ARTIFACTS / f"phone-{name.replace(' ', '-')}.png"))
            width = page.evaluate("document.documentElement.scrollWidth")
            self.assertLessEqual(width, 390, f"{name} ({url}) is {width} px wide")
            nav = page.locator("nav").first
            box = nav.bounding_box()
            assert box is not None
            links = nav.get_by_role("link")
            tops = {round(links.nth(i).bounding_box()["y"]) for i in range(links.count())}
            self.assertEqual(len(tops), 1, f"{name}: the nav wraps onto {len(tops)} lines")
        self.assertEqual(self.errors, [])

    def test_a_book_is_created_synced_and_deleted(self) -> None:
        create_sync_and_delete(self.page, self.live_server_url, "The Dispossessed")
        self.assertEqual(self.errors, [])
