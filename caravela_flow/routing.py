"""WebSocket routes of caravela_flow, for the ASGI ``URLRouter``. In ``asgi.py``::

    from caravela_flow.routing import websocket_urlpatterns

    application = ProtocolTypeRouter({
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    })

The second route takes a URL without a token, so it too is refused with 4403.
"""

from __future__ import annotations

from django.urls import path

from .consumers import FlowConsumer
from .tokens import URL_PREFIX

_PREFIX = URL_PREFIX.lstrip("/")

websocket_urlpatterns = [
    path(f"{_PREFIX}<str:token>/", FlowConsumer.as_asgi()),
    path(_PREFIX, FlowConsumer.as_asgi()),
]
