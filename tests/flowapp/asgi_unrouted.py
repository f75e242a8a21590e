"""An ASGI application that serves HTTP but routes no ``caravela-flows`` channel (for E007)."""

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

application = ProtocolTypeRouter({"http": get_asgi_application()})
