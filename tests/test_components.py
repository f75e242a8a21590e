"""``{% flow_component "Name" handle %}`` and the check of the Vite build behind it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.template import Context, Template
from django.test import RequestFactory, override_settings

from caravela_flow import start, stop
from caravela_flow.checks import check_component_builds
from caravela_flow.tokens import read_token
from tests.flowapp.flows import WorkerFlows

DATA = re.compile(r'<script type="application/json">(.*?)</script>', re.S)


def render(source: str, **context: object) -> str:
    return Template("{% load caravela_flow %}" + source).render(Context(context))


def mount_data(html: str) -> dict:
    [text] = DATA.findall(html)
    return json.loads(text)


def request_for(user: User | AnonymousUser) -> object:
    request = RequestFactory().get("/")
    request.user = user  # type: ignore[attr-defined]
    return request


@pytest.fixture
def handle():
    handle = start(WorkerFlows, "hold", {"book_id": 7, "dirty": False})
    yield handle
    stop(handle)


def test_renders_a_mount_point_with_the_snapshot_and_a_url_for_the_user(handle) -> None:
    alice = User(pk=10, username="alice")
    html = render(
        '{% flow_component "SyncIndicator" handle %}', handle=handle, request=request_for(alice)
    )
    assert 'data-caravela-flow-component="SyncIndicator"' in html
    assert f'data-flow-id="{handle.id}"' in html
    data = mount_data(html)
    token = data["url"].removeprefix("/ws/flows/").removesuffix("/")
    assert read_token(token, alice) == handle.id
    snapshot = data["snapshot"]
    assert (snapshot["flow_id"], snapshot["status"], snapshot["reason"]) == (
        handle.id,
        "running",
        None,
    )
    assert snapshot["state"]["book_id"] == 7 and snapshot["state"]["dirty"] is False
    assert isinstance(snapshot["version"], int)
    assert data["props"] == {}


def test_extra_arguments_become_props_and_html_is_escaped(handle) -> None:
    html = render(
        '{% flow_component "SyncIndicator" handle label=label n=3 %}',
        handle=handle,
        label="</script><b>",
    )
    assert "</script><b>" not in html
    assert mount_data(html)["props"] == {"label": "</script><b>", "n": 3}


def test_a_finished_flow_renders_its_end_and_an_unknown_one_no_snapshot() -> None:
    handle = start(WorkerFlows, "hold", {"book_id": 8})
    stop(handle)
    html = render('{% flow_component "SyncIndicator" handle %}', handle=handle)
    assert mount_data(html)["snapshot"]["status"] == "stopped"
    html = render('{% flow_component "SyncIndicator" flow_id %}', flow_id="0" * 32)
    assert mount_data(html)["snapshot"] is None


@pytest.mark.parametrize("name", ["", "my-widget", "<b>", "1Widget"])
def test_a_bad_component_name_is_refused(handle, name: str) -> None:
    with pytest.raises(ValueError, match="not a component name"):
        render("{% flow_component name handle %}", name=name, handle=handle)


# -- caravela_flow.W010: the Vite build is missing ---------------------------------------------


def vite(manifest: Path) -> dict:
    return {"default": {"dev_mode": False, "manifest_path": manifest}}


def test_no_warning_for_a_complete_build(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "main-1.js").write_text("")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"main.js": {"file": "assets/main-1.js", "isEntry": True}}))
    with override_settings(DJANGO_VITE=vite(manifest)):
        assert check_component_builds() == []


def test_warns_with_the_build_command_when_the_manifest_is_missing(tmp_path: Path) -> None:
    with override_settings(DJANGO_VITE=vite(tmp_path / "manifest.json")):
        [warning] = check_component_builds()
    assert warning.id == "caravela_flow.W010"
    assert "manifest" in warning.msg and "missing" in warning.msg
    assert "npm run build" in (warning.hint or "")


def test_warns_when_a_built_file_is_missing(tmp_path: Path) -> None:
    manifest = tmp_path / ".vite" / "manifest.json"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({"main.js": {"file": "assets/main-2.js", "css": ["a.css"]}}))
    (tmp_path / "a.css").write_text("")
    with override_settings(DJANGO_VITE=vite(manifest)):
        [warning] = check_component_builds()
    assert "assets/main-2.js" in warning.msg and "a.css" not in warning.msg


def test_dev_mode_and_projects_without_django_vite_are_not_checked(tmp_path: Path) -> None:
    missing = {"default": {"dev_mode": True, "manifest_path": tmp_path / "none.json"}}
    with override_settings(DJANGO_VITE=missing):
        assert check_component_builds() == []
    with override_settings(
        INSTALLED_APPS=["caravela_flow", "channels"], DJANGO_VITE=vite(tmp_path / "none.json")
    ):
        assert check_component_builds() == []
