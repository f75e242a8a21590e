"""``CARAVELA_FLOW["WEBSOCKET_PATH"]`` and the script prefix in subscription URLs.

The routes live under ``WEBSOCKET_PATH``; the URLs a page uses start with the
script prefix (``FORCE_SCRIPT_NAME``), which Channels' router strips as the
ASGI ``root_path``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.test import RequestFactory, SimpleTestCase, override_settings
from django.urls import clear_script_prefix, path, set_script_prefix

from caravela_flow import FlowHandle, astart, astop, subscription_url
from caravela_flow.components import flow_component_html
from caravela_flow.conf import get_settings
from caravela_flow.routing import websocket_routes
from caravela_flow.tokens import read_token, websocket_prefix
from tests.flowapp.flows import WorkerFlows
from tests.worker_support import Daphne, RedisServer, WorkerPool, worker_mode

FLOW_ID = uuid.uuid4().hex
TAG = "{% load caravela_flow %}{% flow_subscription_url handle %}"


def tag_view(request: HttpRequest) -> HttpResponse:
    html = Template(TAG).render(Context({"handle": FLOW_ID, "request": request}))
    return HttpResponse(html)


urlpatterns = [path("tag/", tag_view)]


async def served(page: str, root_path: str = "") -> str:
    """The body of ``page`` as Django's ASGI handler serves it (it sets the script prefix).

    Django's test client does not set the script prefix; a real server does.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": page,
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
    }
    communicator = ApplicationCommunicator(ASGIHandler(), scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    assert start["status"] == 200, start
    body = await communicator.receive_output(10)
    await communicator.wait(10)
    return bytes(body["body"]).decode()


def resolves(routes: list[Any], route_path: str) -> dict[str, Any] | None:
    for route in routes:
        match = route.pattern.match(route_path)
        if match:
            return match[2]
    return None


class WebsocketPathTests(SimpleTestCase):
    def tearDown(self) -> None:
        clear_script_prefix()
        set_script_prefix("/")

    def test_the_default(self) -> None:
        self.assertEqual(get_settings().WEBSOCKET_PATH, "ws/flows/")
        self.assertEqual(websocket_prefix(), "/ws/flows/")
        self.assertTrue(subscription_url(FLOW_ID).startswith("/ws/flows/"))

    @override_settings(CARAVELA_FLOW={"WEBSOCKET_PATH": "live/flows/"})
    def test_the_setting_moves_the_urls_and_the_routes(self) -> None:
        url = subscription_url(FLOW_ID)
        self.assertTrue(url.startswith("/live/flows/"), url)
        token = url.removeprefix("/live/flows/").removesuffix("/")
        self.assertEqual(read_token(token), FLOW_ID)
        routes = websocket_routes()
        self.assertEqual(resolves(routes, url.lstrip("/")), {"token": token})
        self.assertIsNone(resolves(routes, f"ws/flows/{token}/"))
        # The catch-all under the path (refused with 4403, not a 500).
        self.assertEqual(resolves(routes[2:], "live/flows/a/b/c"), {})

    @override_settings(CARAVELA_FLOW={"WEBSOCKET_PATH": "a.b/"})
    def test_the_catch_all_route_escapes_the_path(self) -> None:
        self.assertIsNone(resolves(websocket_routes()[2:], "axb/x"))
        self.assertEqual(resolves(websocket_routes()[2:], "a.b/x"), {})

    def test_bad_paths_are_refused(self) -> None:
        for bad in ["/ws/flows/", "ws/flows", "", "ws//flows/", "ws/fl ows/", "../x/", 7, None]:
            with (
                self.subTest(bad=bad),
                override_settings(CARAVELA_FLOW={"WEBSOCKET_PATH": bad}),
                self.assertRaisesMessage(ImproperlyConfigured, "WEBSOCKET_PATH"),
            ):
                get_settings()

    def test_good_paths(self) -> None:
        for good in ["ws/", "ws/flows/", "api/v2/live-flows/", "a_b/c.d/", "~x/"]:
            with self.subTest(good=good), override_settings(CARAVELA_FLOW={"WEBSOCKET_PATH": good}):
                self.assertEqual(get_settings().WEBSOCKET_PATH, good)

    def test_the_script_prefix_comes_first(self) -> None:
        set_script_prefix("/app/")
        self.assertEqual(websocket_prefix(), "/app/ws/flows/")
        self.assertTrue(subscription_url(FLOW_ID).startswith("/app/ws/flows/"))
        html = flow_component_html("Badge", FlowHandle(FLOW_ID))
        self.assertIn('"url": "/app/ws/flows/', html)

    @override_settings(FORCE_SCRIPT_NAME="/app", ROOT_URLCONF=__name__)
    async def test_a_page_served_under_force_script_name_gets_it(self) -> None:
        url = await served("/app/tag/")
        self.assertTrue(url.startswith("/app/ws/flows/"), url)
        self.assertEqual(read_token(url.removeprefix("/app/ws/flows/").removesuffix("/")), FLOW_ID)

    @override_settings(ROOT_URLCONF=__name__)
    async def test_a_page_served_under_an_asgi_root_path_gets_it(self) -> None:
        url = await served("/proxy/tag/", root_path="/proxy")
        self.assertTrue(url.startswith("/proxy/ws/flows/"), url)

    @override_settings(
        FORCE_SCRIPT_NAME="/app", CARAVELA_FLOW={"WEBSOCKET_PATH": "live/"}, ROOT_URLCONF=__name__
    )
    async def test_both_together(self) -> None:
        url = await served("/app/tag/")
        self.assertTrue(url.startswith("/app/live/"), url)

    def test_the_tag_binds_the_requests_user_under_a_prefix(self) -> None:
        set_script_prefix("/app/")
        alice = User(pk=10, username="alice")
        request = RequestFactory().get("/books/")
        request.user = alice
        url = tag_view(request).content.decode()
        self.assertEqual(
            read_token(url.removeprefix("/app/ws/flows/").removesuffix("/"), alice), FLOW_ID
        )


@pytest.mark.worker
async def test_daphne_under_a_root_path_serves_the_configured_websocket_path(
    redis_server: RedisServer, make_pool: Callable[[], WorkerPool], worker_logs: Path
) -> None:
    """A real daphne (``--root-path /app``), a worker, and a real WebSocket client."""
    websockets = pytest.importorskip("websockets.asyncio.client")
    pool = make_pool()
    pool.spawn(1)
    daphne = Daphne(
        redis_server.url,
        pool.prefix,
        worker_logs,
        daphne_args=("--root-path", "/app"),
        CARAVELA_FLOW_WEBSOCKET_PATH="live/flows/",
    )
    set_script_prefix("/app/")
    try:
        with worker_mode(redis_server.url, pool.prefix, WEBSOCKET_PATH="live/flows/"):
            handle = await astart(WorkerFlows, "hold")
            try:
                url = subscription_url(handle)
                assert url.startswith("/app/live/flows/"), url
                async with websockets.connect(daphne.url(url), origin=daphne.origin) as socket:
                    snapshot = json.loads(await asyncio.wait_for(socket.recv(), 20))
                assert (snapshot["event"], snapshot["flow_id"]) == ("snapshot", handle.id)
                # The default path is not served any more: the fallback route closes it.
                token = url.removeprefix("/app/live/flows/")
                old = daphne.url(f"/app/ws/flows/{token}")
                async with websockets.connect(old, origin=daphne.origin) as socket:
                    await asyncio.wait_for(socket.wait_closed(), 20)
                assert socket.close_code == 4404
                # Under the path, a bad token reaches FlowConsumer: 4403.
                bad = daphne.url("/app/live/flows/not-a-token/")
                async with websockets.connect(bad, origin=daphne.origin) as socket:
                    await asyncio.wait_for(socket.wait_closed(), 20)
                assert socket.close_code == 4403
                # Refused once, at WARNING, with the reason.
                refused = r"WARNING caravela_flow: refused a flow subscription: the subscription"
                daphne.wait_for(refused + " token is not valid", 20)
                assert daphne.count(refused) == 1
            finally:
                await astop(handle)
    finally:
        clear_script_prefix()
        set_script_prefix("/")
        daphne.stop()
