"""ASGI entry point: HTTP, WebSockets, and the ``caravela-flows`` worker channel."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

# Set up Django (and the app registry) before importing anything that uses models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from caravela_flow.routing import fallback_route, websocket_urlpatterns  # noqa: E402

routes: dict[str, Any] = {"http": django_asgi_app}

routes["websocket"] = AllowedHostsOriginValidator(
    AuthMiddlewareStack(URLRouter([*websocket_urlpatterns, fallback_route]))
)

from caravela_flow.worker import FlowWorkerConsumer  # noqa: E402

routes["channel"] = ChannelNameRouter({"caravela-flows": FlowWorkerConsumer.as_asgi()})

application = ProtocolTypeRouter(routes)
