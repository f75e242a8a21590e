"""Signed subscription tokens: a flow id bound to a user, expiring."""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.urls import get_script_prefix

from .conf import get_settings
from .errors import FlowError, MalformedFlowId
from .handle import FlowHandle, flow_id_of, is_flow_id

SALT = "caravela_flow.subscription"
#: Where subscriptions are served with the default settings (no script prefix).
URL_PREFIX = "/ws/flows/"


class TokenRefused(FlowError):
    """A subscription token is missing, forged, expired, or someone else's."""


def user_key(user: Any) -> str:
    """What a token binds to: the user's primary key, or "" for anonymous."""
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    return str(user.pk)


def make_token(handle: FlowHandle | str, user: Any = None) -> str:
    """A signed token that lets ``user`` subscribe to the flow."""
    try:
        flow_id = flow_id_of(handle)
    except MalformedFlowId as exc:
        raise TokenRefused(str(exc)) from None
    return signing.dumps({"f": flow_id, "u": user_key(user)}, salt=SALT)


def read_token(token: str, user: Any = None) -> str:
    """The flow id a valid token names for ``user``; else :class:`TokenRefused`."""
    if not token:
        raise TokenRefused("no subscription token")
    try:
        data = signing.loads(token, salt=SALT, max_age=get_settings().TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        raise TokenRefused("the subscription token has expired") from None
    except signing.BadSignature:
        raise TokenRefused("the subscription token is not valid") from None
    if not isinstance(data, dict) or not is_flow_id(str(data.get("f", ""))):
        raise TokenRefused("the subscription token is not valid")
    if data.get("u") != user_key(user):
        if data.get("u") == "":
            raise TokenRefused(
                "the subscription token belongs to another user: it was made for an "
                "anonymous user, not this logged-in one (was its page rendered without the "
                "request context processor? see check caravela_flow.W011)"
            )
        raise TokenRefused("the subscription token belongs to another user")
    return str(data["f"])


def websocket_prefix() -> str:
    """The path the subscription URLs start with: the script prefix, then ``WEBSOCKET_PATH``.

    ``/ws/flows/`` by default; ``/app/ws/flows/`` with ``FORCE_SCRIPT_NAME = "/app"``.
    """
    return f"{get_script_prefix()}{get_settings().WEBSOCKET_PATH}"


def subscription_url(handle: FlowHandle | str, user: Any = None) -> str:
    """The WebSocket path that subscribes ``user`` to the flow, e.g. ``/ws/flows/<token>/``."""
    return f"{websocket_prefix()}{make_token(handle, user)}/"
