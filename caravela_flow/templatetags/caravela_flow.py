"""Template tags: ``{% load caravela_flow %}{% flow_subscription_url handle %}``."""

from __future__ import annotations

from typing import Any

from django import template

from ..handle import FlowHandle
from ..tokens import subscription_url

register = template.Library()


@register.simple_tag(takes_context=True)
def flow_subscription_url(context: template.Context, handle: FlowHandle | str) -> str:
    """The WebSocket path that subscribes the request's user (anonymous without a request)."""
    request: Any = context.get("request")
    user = getattr(request, "user", None)
    return subscription_url(handle, user)
