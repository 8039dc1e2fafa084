"""/api/v1/workspaces/<slug>/audit/: admins and owners read the log, newest first, paginated."""
from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Workspace

AUDIT = "/api/v1/workspaces/vision-team/audit/"


@pytest.mark.parametrize("role_fixture", ["owner", "admin_user"])
def test_admins_and_owners_read_the_log_newest_first(
    api_client: Any, workspace: Workspace, admin_user: Any, role_fixture: str, request: pytest.FixtureRequest
) -> None:
    client = api_client(request.getfixturevalue(role_fixture))
    client.patch("/api/v1/workspaces/vision-team/", {"name": "Vision"}, format="json")

    response = client.get(AUDIT)

    assert response.status_code == 200
    actions = [entry["action"] for entry in response.json()["results"]]
    assert actions == ["workspace.update", "workspace.create"]
    newest = response.json()["results"][0]
    assert newest["details"] == {"name": {"from": "Vision team", "to": "Vision"}}
    assert newest["target_type"] == "accounts.Workspace"


def test_the_log_is_paginated(api_client: Any, workspace: Workspace, owner: Any) -> None:
    client = api_client(owner)
    for n in range(3):
        client.patch("/api/v1/workspaces/vision-team/", {"name": f"Vision {n}"}, format="json")

    first = client.get(AUDIT, {"page_size": 2}).json()

    assert first["count"] == 4 and len(first["results"]) == 2 and first["next"]
    assert first["results"][0]["details"]["name"]["to"] == "Vision 2"
    assert client.get(first["next"]).json()["results"][-1]["action"] == "workspace.create"


@pytest.mark.parametrize("role_fixture", ["member", "viewer"])
def test_members_and_viewers_cannot_read_the_log(
    api_client: Any, workspace: Workspace, role_fixture: str, request: pytest.FixtureRequest
) -> None:
    assert api_client(request.getfixturevalue(role_fixture)).get(AUDIT).status_code == 403


def test_the_log_holds_only_this_workspaces_entries(api_client: Any, workspace: Workspace, owner: Any) -> None:
    api_client(owner).post("/api/v1/tokens/", {"name": "laptop"}, format="json")  # no workspace

    actions = [entry["action"] for entry in api_client(owner).get(AUDIT).json()["results"]]

    assert actions == ["workspace.create"]
