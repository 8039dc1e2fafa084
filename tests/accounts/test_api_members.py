"""/api/v1/workspaces/<slug>/members/: viewers read; admins add, change roles and remove
(owners alone touch owners); anyone may leave; a workspace keeps an owner."""
from __future__ import annotations

from typing import Any

import pytest

from accounts.models import AuditEntry, Membership, Role, Workspace
from tests.conftest import make_user

MEMBERS = "/api/v1/workspaces/vision-team/members/"


def membership_of(user: Any, workspace: Workspace) -> Membership:
    return Membership.objects.get(user=user, workspace=workspace)


def url_of(membership: Membership) -> str:
    return f"{MEMBERS}{membership.pk}/"


def test_a_viewer_lists_the_members_with_their_roles(
    api_client: Any, workspace: Workspace, admin_user: Any, member: Any, viewer: Any
) -> None:
    response = api_client(viewer).get(MEMBERS)

    assert response.status_code == 200
    assert [(m["username"], m["role"]) for m in response.json()["results"]] == [
        ("olivia", "owner"),
        ("adam", "admin"),
        ("mia", "member"),
        ("victor", "viewer"),
    ]


def test_an_admin_adds_a_member_by_user_name(api_client: Any, workspace: Workspace, admin_user: Any) -> None:
    newcomer = make_user("nina")

    response = api_client(admin_user).post(MEMBERS, {"username": "nina", "role": "member"}, format="json")

    assert response.status_code == 201
    assert (response.json()["username"], response.json()["role"]) == ("nina", "member")
    assert membership_of(newcomer, workspace).role == Role.MEMBER
    assert AuditEntry.objects.filter(workspace=workspace, action="membership.add", actor=admin_user).exists()


@pytest.mark.parametrize("role_fixture", ["viewer", "member"])
def test_viewers_and_members_cannot_add_members(
    api_client: Any, workspace: Workspace, role_fixture: str, request: pytest.FixtureRequest
) -> None:
    make_user("nina")
    user = request.getfixturevalue(role_fixture)

    response = api_client(user).post(MEMBERS, {"username": "nina", "role": "viewer"}, format="json")

    assert response.status_code == 403
    assert not Membership.objects.filter(workspace=workspace, user__username="nina").exists()


def test_an_admin_cannot_make_an_owner(api_client: Any, workspace: Workspace, admin_user: Any) -> None:
    make_user("nina")

    response = api_client(admin_user).post(MEMBERS, {"username": "nina", "role": "owner"}, format="json")

    assert response.status_code == 403 and "owner" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"username": "nobody", "role": "member"}, "username", "No user named 'nobody'"),
        ({"username": "mia", "role": "member"}, "username", "already a member"),
        ({"username": "nina", "role": "boss"}, "role", "allowed: owner, admin, member, viewer"),
        ({"username": "nina"}, "role", "required"),
        ({"role": "member"}, "username", "required"),
        ({"username": "nina", "role": "member", "email": "n@example.com"}, "email", "Unknown field"),
    ],
)
def test_adding_a_member_with_bad_input_is_400_naming_the_field(
    api_client: Any, workspace: Workspace, owner: Any, member: Any, body: dict[str, Any], field: str, words: str
) -> None:
    make_user("nina")
    before = Membership.objects.filter(workspace=workspace).count()

    response = api_client(owner).post(MEMBERS, body, format="json")

    assert response.status_code == 400
    assert words in response.json()[field][0], response.json()
    assert Membership.objects.filter(workspace=workspace).count() == before


def test_an_admin_changes_a_members_role(api_client: Any, workspace: Workspace, admin_user: Any, member: Any) -> None:
    response = api_client(admin_user).patch(url_of(membership_of(member, workspace)), {"role": "viewer"}, format="json")

    assert response.status_code == 200 and response.json()["role"] == "viewer"
    assert membership_of(member, workspace).role == Role.VIEWER


def test_a_viewer_cannot_change_a_role(api_client: Any, workspace: Workspace, viewer: Any, member: Any) -> None:
    response = api_client(viewer).patch(url_of(membership_of(member, workspace)), {"role": "admin"}, format="json")

    assert response.status_code == 403
    assert membership_of(member, workspace).role == Role.MEMBER


def test_the_last_owner_cannot_be_demoted(api_client: Any, workspace: Workspace, owner: Any) -> None:
    response = api_client(owner).patch(url_of(membership_of(owner, workspace)), {"role": "admin"}, format="json")

    assert response.status_code == 400 and "last owner" in response.json()["role"][0]
    assert membership_of(owner, workspace).role == Role.OWNER


@pytest.mark.parametrize(
    ("body", "field"), [({"role": "chief"}, "role"), ({}, "role"), ({"role": "viewer", "user": 3}, "user")]
)
def test_changing_a_role_with_bad_input_is_400_naming_the_field(
    api_client: Any, workspace: Workspace, owner: Any, member: Any, body: dict[str, Any], field: str
) -> None:
    response = api_client(owner).patch(url_of(membership_of(member, workspace)), body, format="json")

    assert response.status_code == 400 and field in response.json()
    assert membership_of(member, workspace).role == Role.MEMBER


def test_an_admin_removes_a_member(api_client: Any, workspace: Workspace, admin_user: Any, member: Any) -> None:
    response = api_client(admin_user).delete(url_of(membership_of(member, workspace)))

    assert response.status_code == 204
    assert not Membership.objects.filter(user=member, workspace=workspace).exists()
    assert AuditEntry.objects.filter(workspace=workspace, action="membership.remove").exists()


def test_a_viewer_cannot_remove_a_member(api_client: Any, workspace: Workspace, viewer: Any, member: Any) -> None:
    response = api_client(viewer).delete(url_of(membership_of(member, workspace)))

    assert response.status_code == 403
    assert Membership.objects.filter(user=member, workspace=workspace).exists()


def test_a_viewer_may_leave(api_client: Any, workspace: Workspace, viewer: Any) -> None:
    response = api_client(viewer).delete(url_of(membership_of(viewer, workspace)))

    assert response.status_code == 204
    assert api_client(viewer).get(MEMBERS).status_code == 404


def test_a_membership_of_another_workspace_is_404_under_this_slug(
    api_client: Any, workspace: Workspace, owner: Any, outsider: Any
) -> None:
    elsewhere = Membership.objects.get(user=outsider)  # in the outsider's personal workspace

    for method in ("patch", "delete"):
        response = getattr(api_client(owner), method)(url_of(elsewhere), {"role": "viewer"}, format="json")
        assert response.status_code == 404
    assert Membership.objects.get(pk=elsewhere.pk).role == Role.OWNER
