"""``{% flow_subscription_url handle %}`` renders a subscription path for the request's user."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest
from django.template import Context, Template, TemplateSyntaxError
from django.test import RequestFactory

from caravela_flow import FlowHandle
from caravela_flow.tokens import URL_PREFIX, TokenRefused, read_token

FLOW_ID = uuid.uuid4().hex
TAG = "{% load caravela_flow %}{% flow_subscription_url handle %}"


def render(source: str, **context: object) -> str:
    return Template(source).render(Context(context))


def token_of(url: str) -> str:
    assert url.startswith(URL_PREFIX) and url.endswith("/"), url
    return url[len(URL_PREFIX) : -1]


def request_for(user: User | AnonymousUser) -> HttpRequest:
    request = RequestFactory().get("/books/")
    request.user = user
    return request


def test_renders_a_path_for_the_requests_user() -> None:
    alice, bob = User(pk=10, username="alice"), User(pk=11, username="bob")
    url = render(TAG, handle=FlowHandle(FLOW_ID), request=request_for(alice))
    assert read_token(token_of(url), alice) == FLOW_ID
    with pytest.raises(TokenRefused, match="another user"):
        read_token(token_of(url), bob)
    with pytest.raises(TokenRefused, match="another user"):
        read_token(token_of(url), AnonymousUser())


def test_anonymous_request_gets_an_anonymous_token() -> None:
    url = render(TAG, handle=FLOW_ID, request=request_for(AnonymousUser()))
    assert read_token(token_of(url), None) == FLOW_ID
    with pytest.raises(TokenRefused):
        read_token(token_of(url), User(pk=10))


def test_without_a_request_the_token_is_anonymous() -> None:
    url = render(TAG, handle=FLOW_ID)
    assert read_token(token_of(url)) == FLOW_ID


def test_request_without_user_is_anonymous() -> None:
    url = render(TAG, handle=FLOW_ID, request=RequestFactory().get("/"))
    assert read_token(token_of(url)) == FLOW_ID


def test_as_variable_and_in_an_attribute() -> None:
    alice = User(pk=10, username="alice")
    source = (
        "{% load caravela_flow %}{% flow_subscription_url handle as url %}"
        '<div data-url="{{ url }}"></div>'
    )
    html = render(source, handle=FLOW_ID, request=request_for(alice))
    assert html.startswith('<div data-url="') and html.endswith('"></div>')
    url = html[len('<div data-url="') : -len('"></div>')]
    assert read_token(token_of(url), alice) == FLOW_ID


def test_bad_handle_fails_loudly() -> None:
    with pytest.raises(TokenRefused, match="not a flow id"):
        render(TAG, handle="nope")


def test_handle_is_required() -> None:
    with pytest.raises(TemplateSyntaxError):
        Template("{% load caravela_flow %}{% flow_subscription_url %}")
