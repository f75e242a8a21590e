"""WebSocket routes of caravela_flow, for the ASGI ``URLRouter``. In ``asgi.py``::

    from caravela_flow.routing import websocket_urlpatterns

    application = ProtocolTypeRouter({
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    })

The other routes take any other path under the prefix (no token, a token
with extra segments), so it too is refused with 4403 rather than failing
in the router with an HTTP 500.
"""

from __future__ import annotations

from django.urls import path, re_path

from .consumers import FlowConsumer, NoRouteConsumer
from .tokens import URL_PREFIX

_PREFIX = URL_PREFIX.lstrip("/")

websocket_urlpatterns = [
    path(f"{_PREFIX}<str:token>/", FlowConsumer.as_asgi()),
    path(_PREFIX, FlowConsumer.as_asgi()),
    re_path(rf"^{_PREFIX}", FlowConsumer.as_asgi()),
]

#: A route for last place in a ``URLRouter``: any other path is closed with 4404.
fallback_route = re_path(r"", NoRouteConsumer.as_asgi())
