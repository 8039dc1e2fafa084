"""/api/v1/auth/login/, auth/logout/ and me/: session login without a CSRF token, CSRF on
every other session write, the login throttle and the per-name lockout."""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Workspace

LOGIN = "/api/v1/auth/login/"


def anonymous(*, csrf: bool = False) -> APIClient:
    return APIClient(HTTP_HOST="localhost", enforce_csrf_checks=csrf)


def log_in(client: APIClient, username: str, password: str) -> Any:
    return client.post(LOGIN, {"username": username, "password": password}, format="json")


def test_login_with_the_right_password_starts_a_session(owner: Any, workspace: Workspace) -> None:
    client = anonymous()

    response = log_in(client, "olivia", "olivia-pass-123")

    assert response.status_code == 200
    assert response.json()["username"] == "olivia"
    assert "password" not in response.json()
    me = client.get("/api/v1/me/")
    assert me.status_code == 200 and me.json()["id"] == owner.pk


def test_login_with_a_wrong_password_is_400_and_starts_no_session(owner: Any) -> None:
    client = anonymous()

    response = log_in(client, "olivia", "nope")

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Wrong user name or password."]}
    assert client.get("/api/v1/me/").status_code == 401


def test_login_with_an_unknown_field_is_400_naming_it(owner: Any) -> None:
    response = anonymous().post(
        LOGIN, {"username": "olivia", "password": "olivia-pass-123", "remember": True}, format="json"
    )

    assert response.status_code == 400
    assert "Unknown field" in response.json()["remember"][0]


def test_login_without_a_password_is_400_naming_the_field(owner: Any) -> None:
    response = anonymous().post(LOGIN, {"username": "olivia"}, format="json")

    assert response.status_code == 400 and "password" in response.json()


def test_login_needs_no_csrf_token_but_later_session_writes_do(owner: Any) -> None:
    client = anonymous(csrf=True)

    assert log_in(client, "olivia", "olivia-pass-123").status_code == 200

    refused = client.post("/api/v1/tokens/", {"name": "laptop"}, format="json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    csrf_token = client.cookies["csrftoken"].value  # set by the login answer
    accepted = client.post("/api/v1/tokens/", {"name": "laptop"}, format="json", HTTP_X_CSRFTOKEN=csrf_token)
    assert accepted.status_code == 201


def test_login_refuses_form_bodies_so_no_other_site_can_post_one(owner: Any) -> None:
    # A cross-site HTML form can send form data but not JSON: refusing forms stops login CSRF.
    response = anonymous().post(LOGIN, {"username": "olivia", "password": "olivia-pass-123"}, format="multipart")

    assert response.status_code == 415
    assert "sessionid" not in response.cookies


def test_logout_ends_the_session(owner: Any) -> None:
    client = anonymous()
    log_in(client, "olivia", "olivia-pass-123")

    assert client.post("/api/v1/auth/logout/").status_code == 204
    assert client.get("/api/v1/me/").status_code == 401


def test_logout_needs_the_csrf_token_of_the_session(owner: Any) -> None:
    client = anonymous(csrf=True)
    log_in(client, "olivia", "olivia-pass-123")

    assert client.post("/api/v1/auth/logout/").status_code == 403
    assert client.get("/api/v1/me/").status_code == 200


def test_me_lists_each_workspace_with_the_users_role(
    api_client: Any, workspace: Workspace, viewer: Any
) -> None:
    response = api_client(viewer).get("/api/v1/me/")

    assert response.status_code == 200
    body = response.json()
    assert {key: body[key] for key in ("username", "is_staff")} == {"username": "victor", "is_staff": False}
    assert {(w["slug"], w["role"], w["personal"]) for w in body["workspaces"]} == {
        ("victors-workspace", "owner", True),
        ("vision-team", "viewer", False),
    }


def test_me_is_refused_to_anonymous_users(db: None) -> None:
    response = anonymous().get("/api/v1/me/")

    assert response.status_code == 401


def test_login_is_throttled_per_client(db: None) -> None:
    client = anonymous()
    # Different names, so no lockout is involved: only the per-client rate (10/min).
    for n in range(10):
        assert log_in(client, f"nobody{n}", "x").status_code == 400

    throttled = log_in(client, "nobody-else", "x")

    assert throttled.status_code == 429
    assert "Retry-After" in throttled.headers


def locked_until(detail: str) -> datetime:
    match = re.search(r"until (\S+?)\.( |$)", detail)
    assert match, detail
    return datetime.fromisoformat(match.group(1))


def test_five_failed_logins_lock_the_name_even_for_the_right_password(owner: Any) -> None:
    client = anonymous()
    for _ in range(4):
        assert log_in(client, "olivia", "wrong").status_code == 400
    fifth = log_in(client, "olivia", "wrong")
    assert fifth.status_code == 400 and "refused until" in fifth.json()["non_field_errors"][0]

    refused = log_in(anonymous(), "olivia", "olivia-pass-123")

    assert refused.status_code == 429
    detail = refused.json()["detail"]
    assert "olivia" in detail
    until = locked_until(detail)
    assert timedelta(seconds=890) < until - timezone.now() <= timedelta(seconds=900)
    assert 890 < int(refused.headers["Retry-After"]) <= 900
    assert "sessionid" not in refused.cookies


def test_the_lockout_ignores_the_case_of_the_name_and_spares_other_names(owner: Any, outsider: Any) -> None:
    client = anonymous()
    for _ in range(5):
        log_in(client, "Olivia", "wrong")

    assert log_in(anonymous(), "OLIVIA", "olivia-pass-123").status_code == 429
    assert log_in(anonymous(), "oscar", "oscar-pass-123").status_code == 200


def test_a_successful_login_clears_the_failure_count(owner: Any) -> None:
    client = anonymous()
    for _ in range(4):
        log_in(client, "olivia", "wrong")
    assert log_in(client, "olivia", "olivia-pass-123").status_code == 200
    for _ in range(4):
        log_in(client, "olivia", "wrong")

    assert log_in(client, "olivia", "olivia-pass-123").status_code == 200


def test_the_lockout_ends_after_its_period(owner: Any, settings: Any) -> None:
    settings.HPO_LOGIN_LOCKOUT_SECONDS = 1
    client = anonymous()
    for _ in range(5):
        log_in(client, "olivia", "wrong")
    assert log_in(client, "olivia", "olivia-pass-123").status_code == 429

    time.sleep(1.1)

    assert log_in(client, "olivia", "olivia-pass-123").status_code == 200


def test_an_inactive_user_cannot_log_in(owner: Any) -> None:
    owner.is_active = False
    owner.save()

    assert log_in(anonymous(), "olivia", "olivia-pass-123").status_code == 400
