"""Helpers for the subscription tests (tokens, the consumer, the live server)."""

from __future__ import annotations

import time
import types
from typing import Any
from unittest import mock

from django.core import signing

from caravela_flow.handle import FlowHandle
from caravela_flow.tokens import make_token

#: The Origin header that ``AllowedHostsOriginValidator`` accepts for the demo's hosts.
ORIGIN = (b"origin", b"http://127.0.0.1")


def token_made_ago(handle: FlowHandle | str, seconds: float, user: Any = None) -> str:
    """A token signed as if ``seconds`` ago (Django's signer reads ``time.time()``)."""
    past = types.SimpleNamespace(time=lambda: time.time() - seconds)
    with mock.patch.object(signing, "time", past):
        return make_token(handle, user)
