"""Template tags of ``{% load caravela_flow %}``: ``flow_subscription_url``, ``flow_component``."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from ..components import flow_component_html
from ..handle import FlowHandle
from ..tokens import subscription_url

register = template.Library()


def _user(context: template.Context) -> Any:
    request: Any = context.get("request")
    return getattr(request, "user", None)


@register.simple_tag(takes_context=True)
def flow_subscription_url(context: template.Context, handle: FlowHandle | str) -> str:
    """The WebSocket path that subscribes the request's user (anonymous without a request)."""
    return subscription_url(handle, _user(context))


@register.simple_tag(takes_context=True)
def flow_component(
    context: template.Context, name: str, handle: FlowHandle | str, **props: Any
) -> SafeString:
    """A mount point for the Svelte component ``name``, following the flow for the request's user.

    Extra keyword arguments become props: ``{% flow_component "Badge" handle label="Svelte" %}``.
    """
    return flow_component_html(name, handle, _user(context), props)
