"""/api/v1/tokens/: a user's own API tokens, the key shown once and stored hashed, and
token authentication on the API."""
from __future__ import annotations

import hashlib
from typing import Any

from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEntry
from accounts.services import token_create

TOKENS = "/api/v1/tokens/"


def with_token(key: str, keyword: str = "Token", *, csrf: bool = False) -> APIClient:
    return APIClient(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"{keyword} {key}", enforce_csrf_checks=csrf)


def test_a_new_token_shows_its_key_once_and_stores_only_its_hash(api_client: Any, owner: Any) -> None:
    client = api_client(owner)

    created = client.post(TOKENS, {"name": "laptop"}, format="json")

    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert set(body) == {"id", "name", "prefix", "created_at", "last_used_at", "key"}
    assert key.startswith(body["prefix"]) and len(key) > 40
    stored = ApiToken.objects.get(pk=body["id"])
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {str(value) for value in ApiToken.objects.values().get(pk=stored.pk).values()}
    listed = client.get(TOKENS).json()
    assert listed["count"] == 1
    assert set(listed["results"][0]) == {"id", "name", "prefix", "created_at", "last_used_at"}
    assert AuditEntry.objects.filter(action="token.create", actor=owner).exists()


def test_a_user_lists_only_their_own_tokens(api_client: Any, owner: Any, outsider: Any) -> None:
    token_create(user=outsider, name="theirs")
    token_create(user=owner, name="mine")

    names = [token["name"] for token in api_client(owner).get(TOKENS).json()["results"]]

    assert names == ["mine"]


def test_a_token_authenticates_api_requests(owner: Any) -> None:
    _, key = token_create(user=owner, name="script")

    for keyword in ("Token", "Bearer"):
        response = with_token(key, keyword).get("/api/v1/me/")
        assert response.status_code == 200 and response.json()["username"] == "olivia"
    assert ApiToken.objects.get(user=owner).last_used_at is not None


def test_token_writes_need_no_csrf_token(owner: Any) -> None:
    _, key = token_create(user=owner, name="script")

    response = with_token(key, csrf=True).post(TOKENS, {"name": "another"}, format="json")

    assert response.status_code == 201


def test_a_revoked_token_is_401(api_client: Any, owner: Any) -> None:
    token, key = token_create(user=owner, name="script")
    assert with_token(key).get("/api/v1/me/").status_code == 200

    assert api_client(owner).delete(f"{TOKENS}{token.pk}/").status_code == 204

    refused = with_token(key).get("/api/v1/me/")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Token")
    assert not ApiToken.objects.filter(pk=token.pk).exists()


def test_an_unknown_token_is_401(db: None) -> None:
    assert with_token("hpo_made-up").get("/api/v1/workspaces/").status_code == 401


def test_another_users_token_cannot_be_revoked_and_is_404(api_client: Any, owner: Any, outsider: Any) -> None:
    token, _ = token_create(user=outsider, name="theirs")

    response = api_client(owner).delete(f"{TOKENS}{token.pk}/")

    assert response.status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_a_token_needs_a_name(api_client: Any, owner: Any) -> None:
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}):
        response = api_client(owner).post(TOKENS, body, format="json")
        assert response.status_code == 400 and "name" in response.json(), body
    assert not ApiToken.objects.exists()


def test_token_names_are_unique_per_user(api_client: Any, owner: Any) -> None:
    client = api_client(owner)
    client.post(TOKENS, {"name": "laptop"}, format="json")

    response = client.post(TOKENS, {"name": "laptop"}, format="json")

    assert response.status_code == 400 and "already have a token" in response.json()["name"][0]


def test_making_a_token_with_an_unknown_field_is_400(api_client: Any, owner: Any) -> None:
    response = api_client(owner).post(TOKENS, {"name": "laptop", "expires": "never"}, format="json")

    assert response.status_code == 400 and "Unknown field. Allowed: name." in response.json()["expires"][0]


def test_making_tokens_is_throttled_but_listing_is_not(api_client: Any, owner: Any) -> None:
    client = api_client(owner)
    for n in range(30):
        assert client.post(TOKENS, {"name": f"t{n}"}, format="json").status_code in (201, 400)

    assert client.post(TOKENS, {"name": "one-more"}, format="json").status_code == 429
    assert client.get(TOKENS).status_code == 200


def test_anonymous_users_cannot_make_tokens(db: None) -> None:
    response = APIClient(HTTP_HOST="localhost").post(TOKENS, {"name": "x"}, format="json")

    assert response.status_code == 401
