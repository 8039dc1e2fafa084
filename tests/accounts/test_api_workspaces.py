"""/api/v1/workspaces/ and /workspaces/<slug>/: list with roles, create (creator owns),
rename and quotas (admins), delete (owners; never a personal workspace)."""
from __future__ import annotations

from typing import Any

import pytest

from accounts.models import AuditEntry, Membership, Role, Workspace

WORKSPACES = "/api/v1/workspaces/"
TEAM = "/api/v1/workspaces/vision-team/"


def test_the_list_holds_the_users_workspaces_with_roles(api_client: Any, workspace: Workspace, member: Any) -> None:
    response = api_client(member).get(WORKSPACES)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert {(w["slug"], w["role"]) for w in body["results"]} == {("mias-workspace", "owner"), ("vision-team", "member")}


def test_the_list_hides_other_workspaces(api_client: Any, workspace: Workspace, outsider: Any) -> None:
    slugs = [w["slug"] for w in api_client(outsider).get(WORKSPACES).json()["results"]]

    assert slugs == ["oscars-workspace"]


def test_the_creator_of_a_workspace_owns_it(api_client: Any, member: Any) -> None:
    response = api_client(member).post(WORKSPACES, {"name": "Speech"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["slug"], body["role"], body["personal"]) == ("speech", "owner", False)
    workspace = Workspace.objects.get(slug="speech")
    assert Membership.objects.get(workspace=workspace).user == member
    assert AuditEntry.objects.filter(workspace=workspace, action="workspace.create").exists()


def test_a_workspace_can_be_made_with_a_chosen_slug(api_client: Any, member: Any) -> None:
    response = api_client(member).post(WORKSPACES, {"name": "Speech", "slug": "asr"}, format="json")

    assert response.status_code == 201 and response.json()["slug"] == "asr"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "Speech", "slug": "Not A Slug"}, "slug"),
        ({"name": "Speech", "slug": "vision-team"}, "slug"),
        ({"name": "Speech", "quota": 3}, "quota"),
    ],
)
def test_making_a_workspace_with_bad_input_is_400_naming_the_field(
    api_client: Any, workspace: Workspace, member: Any, body: dict[str, Any], field: str
) -> None:
    before = Workspace.objects.count()

    response = api_client(member).post(WORKSPACES, body, format="json")

    assert response.status_code == 400 and field in response.json(), response.json()
    assert Workspace.objects.count() == before


def test_a_viewer_reads_a_workspace_with_their_role(api_client: Any, workspace: Workspace, viewer: Any) -> None:
    response = api_client(viewer).get(TEAM)

    assert response.status_code == 200
    assert response.json()["role"] == "viewer" and response.json()["max_concurrent_trials"] is None


def test_an_admin_renames_a_workspace_and_sets_its_quotas(
    api_client: Any, workspace: Workspace, admin_user: Any
) -> None:
    response = api_client(admin_user).patch(
        TEAM, {"name": "Vision", "max_concurrent_trials": 4, "gpu_hours_per_month": 12.5}, format="json"
    )

    assert response.status_code == 200
    assert {k: response.json()[k] for k in ("name", "max_concurrent_trials", "gpu_hours_per_month", "role")} == {
        "name": "Vision",
        "max_concurrent_trials": 4,
        "gpu_hours_per_month": 12.5,
        "role": "admin",
    }
    workspace.refresh_from_db()
    assert (workspace.name, workspace.max_concurrent_trials, workspace.gpu_hours_per_month) == ("Vision", 4, 12.5)
    entry = AuditEntry.objects.get(workspace=workspace, action="workspace.update")
    assert entry.actor == admin_user
    assert entry.details["max_concurrent_trials"] == {"from": None, "to": 4}


def test_null_quotas_mean_no_limit(api_client: Any, workspace: Workspace, owner: Any) -> None:
    Workspace.objects.filter(pk=workspace.pk).update(max_concurrent_trials=2, gpu_hours_per_month=5)

    response = api_client(owner).patch(
        TEAM, {"max_concurrent_trials": None, "gpu_hours_per_month": None}, format="json"
    )

    assert response.status_code == 200
    workspace.refresh_from_db()
    assert workspace.max_concurrent_trials is None and workspace.gpu_hours_per_month is None


def test_a_patch_changes_only_the_fields_sent(api_client: Any, workspace: Workspace, owner: Any) -> None:
    Workspace.objects.filter(pk=workspace.pk).update(max_concurrent_trials=2)

    api_client(owner).patch(TEAM, {"name": "Vision"}, format="json")

    workspace.refresh_from_db()
    assert (workspace.name, workspace.max_concurrent_trials) == ("Vision", 2)


@pytest.mark.parametrize("role_fixture", ["viewer", "member"])
def test_viewers_and_members_cannot_change_a_workspace(
    api_client: Any, workspace: Workspace, role_fixture: str, request: pytest.FixtureRequest
) -> None:
    user = request.getfixturevalue(role_fixture)

    response = api_client(user).patch(TEAM, {"max_concurrent_trials": 99}, format="json")

    assert response.status_code == 403
    workspace.refresh_from_db()
    assert workspace.max_concurrent_trials is None
    assert not AuditEntry.objects.filter(action="workspace.update").exists()


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"max_concurrent_trials": 0}, "max_concurrent_trials", "at least 1"),
        ({"max_concurrent_trials": -3}, "max_concurrent_trials", "at least 1"),
        ({"max_concurrent_trials": "many"}, "max_concurrent_trials", "integer"),
        ({"max_concurrent_trials": 2.5}, "max_concurrent_trials", "integer"),
        ({"gpu_hours_per_month": 0}, "gpu_hours_per_month", "above 0"),
        ({"gpu_hours_per_month": -1.5}, "gpu_hours_per_month", "above 0"),
        ({"gpu_hours_per_month": "lots"}, "gpu_hours_per_month", "number"),
        ({"name": ""}, "name", "blank"),
        ({"name": None}, "name", "null"),
        ({"slug": "new-slug"}, "slug", "Unknown field"),
        ({"personal": True}, "personal", "Unknown field"),
    ],
)
def test_changing_a_workspace_with_bad_values_is_400_naming_the_field_and_rule(
    api_client: Any, workspace: Workspace, admin_user: Any, body: dict[str, Any], field: str, words: str
) -> None:
    response = api_client(admin_user).patch(TEAM, body, format="json")

    assert response.status_code == 400
    assert words in response.json()[field][0], response.json()
    workspace.refresh_from_db()
    assert (workspace.name, workspace.max_concurrent_trials, workspace.gpu_hours_per_month) == ("Vision team", None, None)


def test_an_owner_deletes_a_team_workspace(api_client: Any, workspace: Workspace, owner: Any) -> None:
    response = api_client(owner).delete(TEAM)

    assert response.status_code == 204
    assert not Workspace.objects.filter(slug="vision-team").exists()
    entry = AuditEntry.objects.get(action="workspace.delete")
    assert entry.details["slug"] == "vision-team" and entry.actor == owner


@pytest.mark.parametrize("role_fixture", ["admin_user", "member", "viewer"])
def test_only_owners_delete_a_workspace(
    api_client: Any, workspace: Workspace, role_fixture: str, request: pytest.FixtureRequest
) -> None:
    user = request.getfixturevalue(role_fixture)

    assert api_client(user).delete(TEAM).status_code == 403
    assert Workspace.objects.filter(pk=workspace.pk).exists()


def test_a_personal_workspace_cannot_be_deleted(api_client: Any, owner: Any) -> None:
    response = api_client(owner).delete(f"{WORKSPACES}olivias-workspace/")

    assert response.status_code == 400
    assert "personal workspace" in response.json()["personal"][0]
    assert Workspace.objects.filter(slug="olivias-workspace").exists()


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_another_workspace_is_404_for_every_method(
    api_client: Any, workspace: Workspace, outsider: Any, method: str
) -> None:
    response = getattr(api_client(outsider), method)(TEAM, {"name": "Mine"}, format="json")

    assert response.status_code == 404
    workspace.refresh_from_db()
    assert workspace.name == "Vision team"


def test_superusers_see_every_workspace_as_owners(api_client: Any, workspace: Workspace, outsider: Any) -> None:
    outsider.is_superuser = True
    outsider.save()

    response = api_client(outsider).get(TEAM)

    assert response.status_code == 200 and response.json()["role"] == Role.OWNER
