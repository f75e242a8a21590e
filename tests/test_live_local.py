"""End to end in local mode: a real daphne server, real sockets, the demo's ASGI app.

Runs under pytest and under ``python manage.py test``. The server is a child
process (``ChannelsLiveServerTestCase``); flows are started and signalled
through HTTP views (``tests.live_urls``) so they live in that process, next
to the consumers, as they would in production.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from caravela_flow.tokens import URL_PREFIX

from .live_support import LiveServerTestCase
from .subscriptions import token_made_ago

TIMEOUT = 10.0
START = {"go": False, "n": 0, "synced": False, "finished": False}
#: No proxy, even if the environment names one: the server is on localhost.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@override_settings(ROOT_URLCONF="tests.live_urls")
class LiveLocalModeTests(LiveServerTestCase):
    # -- helpers -----------------------------------------------------------

    def get(self, path: str, cookie: str = "") -> Any:
        request = urllib.request.Request(self.live_server_url + path)
        if cookie:
            request.add_header("Cookie", cookie)
        with OPENER.open(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())

    async def aget(self, path: str, cookie: str = "") -> Any:
        return await asyncio.to_thread(self.get, path, cookie)

    def socket(self, path: str, cookie: str = "") -> connect:
        return connect(
            self.live_server_ws_url + path,
            origin=Origin(self.live_server_url),
            additional_headers={"Cookie": cookie} if cookie else None,
            proxy=None,
            open_timeout=TIMEOUT,
        )

    async def recv_json(self, ws: ClientConnection) -> dict:
        frame: dict = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        return frame

    async def frames_until_closed(self, ws: ClientConnection) -> tuple[list[dict], int | None]:
        """Every frame until the server closes, and its close code."""
        frames = []
        try:
            while True:
                frames.append(await self.recv_json(ws))
        except ConnectionClosed:
            pass
        return frames, await self.close_code(ws)

    async def close_code(self, ws: ClientConnection) -> int | None:
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        return ws.close_code

    # -- tests --------------------------------------------------------------

    async def test_snapshot_then_updates_then_done(self) -> None:
        started = await self.aget("/live/start/")
        flow_id = started["flow_id"]
        self.assertTrue(started["ws_url"].startswith(URL_PREFIX))
        async with self.socket(started["ws_url"]) as ws:
            snapshot = await self.recv_json(ws)
            self.assertEqual(
                snapshot,
                {
                    "event": "snapshot",
                    "flow_id": flow_id,
                    "version": 0,
                    "status": "running",
                    "state": START,
                },
            )
            frames = []
            for n in (1, 2):
                await self.aget(f"/live/signal/{flow_id}/?n={n}")
                frames.append(await self.recv_json(ws))
            await self.aget(f"/live/signal/{flow_id}/?go=1")
            more, code = await self.frames_until_closed(ws)
            frames += more
            self.assertEqual(code, 1000)

        self.assertEqual(
            frames[:2],
            [
                {
                    "event": "state",
                    "flow_id": flow_id,
                    "version": 1,
                    "state": {**snapshot["state"], "n": 1},
                },
                {
                    "event": "state",
                    "flow_id": flow_id,
                    "version": 2,
                    "state": {**snapshot["state"], "n": 2},
                },
            ],
        )
        self.assertEqual(frames[-1]["event"], "done")
        self.assertEqual(
            frames[-1]["state"], {"go": True, "n": 2, "synced": True, "finished": True}
        )
        self.assertTrue(all(frame["event"] == "state" for frame in frames[:-1]))
        versions = [snapshot["version"]] + [frame["version"] for frame in frames]
        self.assertEqual(versions, sorted(set(versions)), "versions must strictly increase")

    async def test_late_subscriber_gets_the_final_snapshot(self) -> None:
        started = await self.aget("/live/start/")
        async with self.socket(started["ws_url"]) as ws:
            await self.recv_json(ws)
            await self.aget(f"/live/signal/{started['flow_id']}/?go=1")
            frames, _ = await self.frames_until_closed(ws)
        done = frames[-1]
        self.assertEqual(done["event"], "done")
        # The flow has ended; a new subscriber gets how it ended, then a normal close.
        async with self.socket(started["ws_url"]) as ws:
            snapshot, code = await self.recv_json(ws), await self.close_code(ws)
        self.assertEqual(code, 1000)
        self.assertEqual(
            snapshot,
            {
                "event": "snapshot",
                "flow_id": started["flow_id"],
                "version": done["version"],
                "status": "done",
                "state": {"go": True, "n": 0, "synced": True, "finished": True},
            },
        )

    async def test_refused_tokens_close_with_4403(self) -> None:
        started = await self.aget("/live/start/")
        token = started["ws_url"][len(URL_PREFIX) : -1]
        forged = token[:-1] + ("A" if token[-1] != "A" else "B")
        paths = [
            f"{URL_PREFIX}{forged}/",
            f"{URL_PREFIX}{token_made_ago(started['flow_id'], 3600 + 60)}/",
            URL_PREFIX,
        ]
        for path in paths:
            async with self.socket(path) as ws:
                self.assertEqual(await self.close_code(ws), 4403, path)

    async def test_unknown_flow_closes_with_4404(self) -> None:
        from caravela_flow import subscription_url

        async with self.socket(subscription_url("0" * 32)) as ws:
            self.assertEqual(await self.close_code(ws), 4404)

    async def test_tokens_follow_the_session_user(self) -> None:
        user = await User.objects.acreate(username="live-alice")
        await self.async_client.aforce_login(user)
        name = settings.SESSION_COOKIE_NAME
        cookie = f"{name}={self.async_client.cookies[name].value}"
        started = await self.aget("/live/start/", cookie)
        async with self.socket(started["ws_url"], cookie) as ws:
            snapshot = await self.recv_json(ws)
            self.assertEqual(
                (snapshot["event"], snapshot["flow_id"]), ("snapshot", started["flow_id"])
            )
        async with self.socket(started["ws_url"]) as ws:  # the same token, logged out
            self.assertEqual(await self.close_code(ws), 4403)
