"""Another workspace's data is invisible: every /api/v1/ route, every method it allows,
tried by the outsider on the workspace's objects, answers 404.

The routes are read from the URL resolver, so a new endpoint is covered the day it is
added; a route with a URL parameter this test does not know fails the test until the
parameter is given an object below.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import optuna
import pytest
from django.core.files.base import ContentFile
from django.urls import get_resolver
from django.urls.resolvers import URLPattern, URLResolver

from accounts.models import Membership
from accounts.services import member_invite, token_create
from studies.optuna_storage import storage_for_study
from studies.services import study_create
from studies.uploads import upload_create
from trials.models import Trial

pytestmark = pytest.mark.django_db
METHODS = ("get", "post", "put", "patch", "delete")
# Routes that are not about a workspace's objects (the caller's own things, or public).
UNSCOPED = {"api/v1/auth/login/", "api/v1/auth/logout/", "api/v1/me/", "api/v1/tokens/", "api/v1/datasets/",
            "api/v1/invitations/accept/", "api/v1/workspaces/", "api/v1/studies/"}


def api_routes() -> Iterator[tuple[str, Any]]:
    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, Any]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern.callback

    for route, callback in walk(get_resolver().url_patterns, ""):
        if route.startswith("api/v1/") and "(?P<rest>" not in route:
            yield route, callback


def allowed_methods(callback: Any) -> list[str]:
    view = getattr(callback, "cls", None)
    return [method for method in METHODS if view is not None and hasattr(view, method)]


@pytest.fixture
def objects(workspace: Any, owner: Any, member: Any, settings: Any, tmp_path: Any) -> dict[str, Any]:
    settings.MEDIA_ROOT = str(tmp_path)
    study = study_create(user=member, workspace=workspace, name="secret", n_trials=3)
    optuna_study = optuna.load_study(study_name=study.optuna_name, storage=storage_for_study(study))
    trial = optuna_study.ask()
    trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
    optuna_study.tell(trial, 0.9)
    model = tmp_path / "model.keras"
    model.write_bytes(b"not really a model")
    Trial.objects.filter(study=study).update(artifacts={"model": str(model)})
    invitation, _key = member_invite(actor=owner, workspace=workspace, email="new@example.com", role="member")
    token, _key = token_create(user=owner, name="owner's")
    texts = "text,label\n" + "".join(f"sample number {i} is {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(40))
    upload = upload_create(user=member, workspace=workspace, name="mine", file=ContentFile(texts.encode(), name="mine.csv"))
    return {
        "slug": workspace.slug,
        "study_id": study.pk,
        "trial_id": Trial.objects.get(study=study).pk,
        "membership_id": Membership.objects.get(workspace=workspace, user=member).pk,
        "invitation_id": invitation.pk,
        "upload_id": upload.pk,
        "token_id": token.pk,
    }


KINDS = {"api/v1/studies/<int:study_id>/plots/<str:kind>/": "history", "api/v1/trials/<int:trial_id>/plots/<str:kind>/": "curves"}


def fill(route: str, objects: dict[str, Any]) -> str:
    import re

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "kind":
            return KINDS[route]
        assert name in objects, f"{route}: give the URL parameter {name!r} an object in this test"
        return str(objects[name])

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", value, route)


def test_every_scoped_route_and_method_is_a_404_for_the_outsider(
    api_client: Callable[[Any], Any], outsider: Any, objects: dict[str, Any]
) -> None:
    client = api_client(outsider)
    tried, wrong = 0, []
    for route, callback in api_routes():
        if route in UNSCOPED:
            continue
        url = fill(route, objects)
        for method in allowed_methods(callback):
            answer = getattr(client, method)(url, {}, format="json")
            tried += 1
            if answer.status_code != 404:
                wrong.append(f"{method.upper()} {url}: {answer.status_code}")
    assert wrong == []
    assert tried >= 25  # the routes were found


def test_the_members_own_requests_on_the_same_routes_are_not_404(
    api_client: Callable[[Any], Any], member: Any, objects: dict[str, Any]
) -> None:
    """The counterpart: the 404s above come from scoping, not from bad addresses."""
    client = api_client(member)
    for route, callback in api_routes():
        if route in UNSCOPED or "token_id" in route or "get" not in allowed_methods(callback):
            continue
        answer = client.get(fill(route, objects))
        assert answer.status_code in (200, 403), (route, answer.status_code)


def test_the_outsider_cannot_reach_the_workspace_through_lists_and_creates(
    api_client: Callable[[Any], Any], outsider: Any, objects: dict[str, Any]
) -> None:
    client = api_client(outsider)
    listed = client.get("/api/v1/studies/", {"workspace": objects["slug"]})
    assert listed.status_code == 404 or listed.json()["count"] == 0
    assert client.get("/api/v1/studies/").json()["count"] == 0
    created = client.post("/api/v1/studies/", {"workspace": objects["slug"], "name": "intrusion"}, format="json")
    assert created.status_code == 404
    assert all(w["slug"] != objects["slug"] for w in client.get("/api/v1/workspaces/").json()["results"])


def test_options_and_foreign_content_types_on_every_route_get_json_answers_not_errors(
    api_client: Callable[[Any], Any], member: Any, objects: dict[str, Any]
) -> None:
    client = api_client(member)
    for route, callback in api_routes():
        url = fill(route, objects) if "<" in route else "/" + route
        answer = client.options(url)
        assert answer.status_code < 500, (route, answer.status_code)
        if "post" in allowed_methods(callback) and "uploads/" not in route and "logout" not in route:
            # A multipart body where JSON is expected: 415 naming the type (no parse error).
            sent = client.post(url, {"name": "x"}, format="multipart")
            assert sent.status_code in (403, 404, 415), (route, sent.status_code)
            assert sent["Content-Type"] == "application/json", route
