"""The workspace's RunPod credentials over the API: admins and owners only, the key write-only
(never in an answer, the audit log, the server log or the admin)."""
from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from accounts.models import AuditEntry, CloudCredentials

KEY = "rp_SECRET_key_0123456789abcdef"
URL = "/api/v1/workspaces/{}/runpod/"
BODY = {"api_key": KEY, "endpoint_id": "abc123xyz", "gpu_type": "A100"}

pytestmark = pytest.mark.django_db


def put(client: Any, workspace: Any, body: dict[str, Any]) -> Any:
    return client.put(URL.format(workspace.slug), body, format="json")


def test_admin_sets_credentials_and_the_answer_never_holds_the_key(
    workspace: Any, admin_user: Any, api_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = api_client(admin_user)
    response = put(client, workspace, BODY)
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["configured"] is True and data["api_key_set"] is True
    assert data["endpoint_id"] == "abc123xyz" and data["gpu_type"] == "A100" and data["updated_at"]
    assert set(data) == {"configured", "endpoint_id", "gpu_type", "api_key_set", "updated_at"}
    fetched = client.get(URL.format(workspace.slug))
    assert fetched.status_code == 200 and fetched.json() == data
    stored = CloudCredentials.objects.get(workspace=workspace)
    assert stored.runpod_api_key == KEY and stored.updated_by == admin_user
    assert KEY not in str(stored) and KEY not in repr(stored)
    for answer in (response, fetched):
        assert KEY not in answer.content.decode()
    audit = AuditEntry.objects.filter(workspace=workspace, action="runpod.set").get()
    assert KEY not in json.dumps(audit.details) and KEY not in audit.target_repr
    assert KEY not in caplog.text


def test_put_replaces_and_delete_forgets(workspace: Any, owner: Any, api_client: Any) -> None:
    client = api_client(owner)
    assert put(client, workspace, BODY).status_code == 200
    assert put(client, workspace, {**BODY, "api_key": "other-key", "gpu_type": ""}).json()["gpu_type"] is None
    assert CloudCredentials.objects.get(workspace=workspace).runpod_api_key == "other-key"
    assert client.delete(URL.format(workspace.slug)).status_code == 204
    assert not CloudCredentials.objects.filter(workspace=workspace).exists()
    answer = client.get(URL.format(workspace.slug)).json()
    assert answer == {"configured": False, "endpoint_id": None, "gpu_type": None, "api_key_set": False, "updated_at": None}
    assert client.delete(URL.format(workspace.slug)).status_code == 204  # idempotent


@pytest.mark.parametrize("who", ["member", "viewer"])
def test_members_and_viewers_may_not_see_or_set_credentials(
    workspace: Any, owner: Any, api_client: Any, request: pytest.FixtureRequest, who: str
) -> None:
    put(api_client(owner), workspace, BODY)
    client = api_client(request.getfixturevalue(who))
    for response in (client.get(URL.format(workspace.slug)), put(client, workspace, BODY), client.delete(URL.format(workspace.slug))):
        assert response.status_code == 403
        assert KEY not in response.content.decode()
    assert CloudCredentials.objects.filter(workspace=workspace).exists()


def test_an_outsider_gets_404_for_every_method(workspace: Any, owner: Any, outsider: Any, api_client: Any) -> None:
    put(api_client(owner), workspace, BODY)
    client = api_client(outsider)
    for response in (client.get(URL.format(workspace.slug)), put(client, workspace, BODY), client.delete(URL.format(workspace.slug))):
        assert response.status_code == 404
        assert KEY not in response.content.decode()
    assert CloudCredentials.objects.get(workspace=workspace).runpod_api_key == KEY


def test_anonymous_is_refused(workspace: Any, api_client: Any) -> None:
    assert api_client(None).get(URL.format(workspace.slug)).status_code in (401, 403)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BODY, "gpu_type": "TPU9000"}, "gpu_type"),
        ({**BODY, "endpoint_id": "no/slashes"}, "endpoint_id"),
        ({**BODY, "api_key": "has space"}, "api_key"),
        ({"endpoint_id": "abc"}, "api_key"),
        ({**BODY, "extra": 1}, "extra"),
    ],
)
def test_bad_input_names_the_field_without_echoing_the_key(
    workspace: Any, admin_user: Any, api_client: Any, body: dict[str, Any], field: str
) -> None:
    response = put(api_client(admin_user), workspace, body)
    assert response.status_code == 400
    assert field in response.content.decode()
    assert KEY not in response.content.decode() and "has space" not in response.content.decode()
    assert not CloudCredentials.objects.filter(workspace=workspace).exists()


def test_the_admin_site_never_shows_the_key(workspace: Any, owner: Any) -> None:
    from django.contrib import admin

    CloudCredentials.objects.create(workspace=workspace, runpod_api_key=KEY, runpod_endpoint_id="e1")
    model_admin = admin.site._registry.get(CloudCredentials)
    if model_admin is None:
        return  # not registered: nothing shown
    assert "runpod_api_key" not in (model_admin.get_fields(None) or [])  # pragma: no cover
