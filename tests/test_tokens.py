"""Signed subscription tokens: bound to a flow id and a user, expiring, tamper-proof."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from caravela_flow import FlowHandle, subscription_url
from caravela_flow.errors import FlowArgumentError
from caravela_flow.tokens import SALT, URL_PREFIX, TokenRefused, make_token, read_token

from .subscriptions import token_made_ago

FLOW_ID = uuid.uuid4().hex


def alice() -> User:
    return User(pk=1, username="alice")


def bob() -> User:
    return User(pk=2, username="bob")


def test_anonymous_round_trip() -> None:
    token = make_token(FLOW_ID)
    assert read_token(token) == FLOW_ID
    assert read_token(token, None) == FLOW_ID
    assert read_token(token, AnonymousUser()) == FLOW_ID


def test_handle_and_id_make_equivalent_tokens() -> None:
    handle = FlowHandle(FLOW_ID, "some.Flows.name")
    assert read_token(make_token(handle, alice()), alice()) == FLOW_ID
    assert read_token(make_token(FLOW_ID, alice()), alice()) == FLOW_ID


def test_authenticated_round_trip() -> None:
    token = make_token(FLOW_ID, alice())
    assert read_token(token, alice()) == FLOW_ID


def test_another_users_token_is_refused() -> None:
    token = make_token(FLOW_ID, alice())
    with pytest.raises(TokenRefused, match="another user"):
        read_token(token, bob())


def test_anonymous_and_authenticated_tokens_do_not_mix() -> None:
    with pytest.raises(TokenRefused, match="another user"):
        read_token(make_token(FLOW_ID), alice())
    with pytest.raises(TokenRefused, match="another user"):
        read_token(make_token(FLOW_ID, alice()), AnonymousUser())
    with pytest.raises(TokenRefused, match="another user"):
        read_token(make_token(FLOW_ID, alice()), None)


@pytest.mark.parametrize("token", ["", None])
def test_missing_token_is_refused(token: str) -> None:
    with pytest.raises(TokenRefused, match="no subscription token"):
        read_token(token)


def test_tampered_token_is_refused() -> None:
    token = make_token(FLOW_ID)
    rest = token.split(":", 1)[1]
    other = make_token(uuid.uuid4().hex)
    forged = f"{other.split(':', 1)[0]}:{rest}"  # another flow's payload, this signature
    assert forged != token
    with pytest.raises(TokenRefused, match="not valid"):
        read_token(forged)
    last = token[-1]
    with pytest.raises(TokenRefused, match="not valid"):
        read_token(token[:-1] + ("A" if last != "A" else "B"))
    with pytest.raises(TokenRefused, match="not valid"):
        read_token("garbage")


def test_token_signed_with_another_key_or_salt_is_refused() -> None:
    with override_settings(SECRET_KEY="another-secret-key-of-sufficient-length-0123456789"):
        foreign = make_token(FLOW_ID)
    with pytest.raises(TokenRefused, match="not valid"):
        read_token(foreign)
    other_salt = signing.dumps({"f": FLOW_ID, "u": ""}, salt="another.salt")
    with pytest.raises(TokenRefused, match="not valid"):
        read_token(other_salt)


@pytest.mark.parametrize("payload", ["just a string", {"f": "not-a-flow-id", "u": ""}, {"u": ""}])
def test_validly_signed_but_malformed_payload_is_refused(payload: object) -> None:
    with pytest.raises(TokenRefused, match="not valid"):
        read_token(signing.dumps(payload, salt=SALT))


def test_expired_token_is_refused() -> None:
    with pytest.raises(TokenRefused, match="expired"):
        read_token(token_made_ago(FLOW_ID, 3600 + 60))
    # A token well inside its lifetime is fine.
    assert read_token(token_made_ago(FLOW_ID, 3600 - 60)) == FLOW_ID


def test_token_max_age_setting() -> None:
    token = token_made_ago(FLOW_ID, 120, alice())
    assert read_token(token, alice()) == FLOW_ID
    with (
        override_settings(CARAVELA_FLOW={"TOKEN_MAX_AGE": 60}),
        pytest.raises(TokenRefused, match="expired"),
    ):
        read_token(token, alice())
    with override_settings(CARAVELA_FLOW={"TOKEN_MAX_AGE": 600}):
        assert read_token(token, alice()) == FLOW_ID


@pytest.mark.parametrize("value", [0, -5, "3600", True])
def test_token_max_age_must_be_positive_seconds(value: object) -> None:
    with (
        override_settings(CARAVELA_FLOW={"TOKEN_MAX_AGE": value}),
        pytest.raises(ImproperlyConfigured, match="TOKEN_MAX_AGE"),
    ):
        read_token(make_token(FLOW_ID))


@pytest.mark.parametrize("value", [0, -1, "3600", None])
def test_group_refresh_seconds_must_be_positive(value: object) -> None:
    with (
        override_settings(CARAVELA_FLOW={"GROUP_REFRESH_SECONDS": value}),
        pytest.raises(ImproperlyConfigured, match="GROUP_REFRESH_SECONDS"),
    ):
        read_token(make_token(FLOW_ID))


@pytest.mark.parametrize("handle", ["", "not-a-flow-id", FLOW_ID.upper(), FLOW_ID + "0"])
def test_bad_handle_is_refused(handle: str) -> None:
    with pytest.raises(TokenRefused, match="not a flow id"):
        make_token(handle)


def test_non_handle_is_a_type_error() -> None:
    with pytest.raises(FlowArgumentError):
        make_token(12345)  # type: ignore[arg-type]
    assert issubclass(FlowArgumentError, TypeError)


def test_subscription_url_holds_a_readable_token() -> None:
    url = subscription_url(FlowHandle(FLOW_ID), alice())
    assert url.startswith(URL_PREFIX) and url.endswith("/")
    token = url[len(URL_PREFIX) : -1]
    assert "/" not in token and "?" not in token and "#" not in token
    assert read_token(token, alice()) == FLOW_ID
    with pytest.raises(TokenRefused):
        read_token(token, bob())


def test_subscription_url_is_exported_and_anonymous_by_default() -> None:
    import caravela_flow

    url = caravela_flow.subscription_url(FLOW_ID)
    assert read_token(url[len(URL_PREFIX) : -1]) == FLOW_ID


def test_tokens_differ_per_flow_and_per_user() -> None:
    other = uuid.uuid4().hex
    tokens = {make_token(FLOW_ID), make_token(other), make_token(FLOW_ID, alice())}
    assert len(tokens) == 3


def test_an_anonymous_token_refused_for_a_logged_in_user_points_at_the_check() -> None:
    with pytest.raises(TokenRefused, match=r"made for an anonymous user.*caravela_flow\.W011"):
        read_token(make_token(FLOW_ID), alice())
