"""WebSocket routes of caravela_flow, for the ASGI ``URLRouter``. In ``asgi.py``::

    from caravela_flow.routing import websocket_urlpatterns

    application = ProtocolTypeRouter({
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    })

The routes are under ``CARAVELA_FLOW["WEBSOCKET_PATH"]`` (``ws/flows/``),
read when this module is imported. The other routes take any other path
under it (no token, a token with extra segments), so it too is refused with
4403 rather than failing in the router with an HTTP 500. A script prefix
(``FORCE_SCRIPT_NAME``, daphne's ``--root-path``) is left out here: the
subscription URLs carry it and Channels' router strips the ASGI ``root_path``.
"""

from __future__ import annotations

import re
from typing import Any

from django.urls import path, re_path

from .conf import get_settings
from .consumers import FlowConsumer, NoRouteConsumer


def websocket_routes() -> list[Any]:
    """The routes of ``FlowConsumer`` under the configured ``WEBSOCKET_PATH``."""
    prefix = get_settings().WEBSOCKET_PATH
    return [
        path(f"{prefix}<str:token>/", FlowConsumer.as_asgi()),
        path(prefix, FlowConsumer.as_asgi()),
        re_path(rf"^{re.escape(prefix)}", FlowConsumer.as_asgi()),
    ]


websocket_urlpatterns = websocket_routes()

#: A route for last place in a ``URLRouter``: any other path is closed with 4404.
fallback_route = re_path(r"", NoRouteConsumer.as_asgi())
