"""The benchmark's ASGI application: the demo's routes plus the baseline's ``bench-raw``."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "worker_bench.settings")

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from caravela_flow.routing import websocket_urlpatterns  # noqa: E402
from caravela_flow.worker import FlowWorkerConsumer  # noqa: E402

from .consumers import RAW_CHANNEL, RawConsumer  # noqa: E402

routes: dict[str, Any] = {
    "http": django_asgi_app,
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    "channel": ChannelNameRouter(
        {"caravela-flows": FlowWorkerConsumer.as_asgi(), RAW_CHANNEL: RawConsumer.as_asgi()}
    ),
}

application = ProtocolTypeRouter(routes)
