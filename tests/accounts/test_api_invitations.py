"""/api/v1/workspaces/<slug>/invitations/ and /invitations/accept/: admins invite by
e-mail, the one-time token is shown once and stored hashed; the invitee joins with it."""
from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import AuditEntry, Invitation, Membership, Role, Workspace
from accounts.services import invitation_accept, member_invite

INVITATIONS = "/api/v1/workspaces/vision-team/invitations/"
ACCEPT = "/api/v1/invitations/accept/"


def test_an_admin_invites_and_sees_the_token_once(api_client: Any, workspace: Workspace, admin_user: Any) -> None:
    client = api_client(admin_user)

    response = client.post(INVITATIONS, {"email": "Nina@Example.com", "role": "member"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["email"], body["role"], body["invited_by"], body["accepted_at"]) == (
        "nina@example.com",
        "member",
        "adam",
        None,
    )
    invitation = Invitation.objects.get(pk=body["id"])
    assert invitation.token_hash == hashlib.sha256(body["token"].encode()).hexdigest()
    listed = client.get(INVITATIONS).json()["results"]
    assert [item["id"] for item in listed] == [invitation.pk]
    assert "token" not in listed[0]


@pytest.mark.parametrize("role_fixture", ["viewer", "member"])
def test_viewers_and_members_cannot_invite_or_list_invitations(
    api_client: Any, workspace: Workspace, role_fixture: str, request: pytest.FixtureRequest
) -> None:
    client = api_client(request.getfixturevalue(role_fixture))

    assert client.post(INVITATIONS, {"email": "nina@example.com", "role": "viewer"}, format="json").status_code == 403
    assert client.get(INVITATIONS).status_code == 403
    assert not Invitation.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address", "role": "member"}, "email"),
        ({"email": "nina@example.com", "role": "king"}, "role"),
        ({"email": "nina@example.com"}, "role"),
        ({"email": "nina@example.com", "role": "member", "message": "hi"}, "message"),
    ],
)
def test_inviting_with_bad_input_is_400_naming_the_field(
    api_client: Any, workspace: Workspace, owner: Any, body: dict[str, Any], field: str
) -> None:
    response = api_client(owner).post(INVITATIONS, body, format="json")

    assert response.status_code == 400 and field in response.json()
    assert not Invitation.objects.exists()


def test_an_admin_withdraws_an_invitation(api_client: Any, workspace: Workspace, owner: Any, admin_user: Any) -> None:
    invitation, _ = member_invite(actor=owner, workspace=workspace, email="nina@example.com", role="member")

    response = api_client(admin_user).delete(f"{INVITATIONS}{invitation.pk}/")

    assert response.status_code == 204
    assert not Invitation.objects.filter(pk=invitation.pk).exists()
    assert AuditEntry.objects.filter(action="membership.revoke_invitation", actor=admin_user).exists()


def test_a_viewer_cannot_withdraw_an_invitation(api_client: Any, workspace: Workspace, owner: Any, viewer: Any) -> None:
    invitation, _ = member_invite(actor=owner, workspace=workspace, email="nina@example.com", role="member")

    assert api_client(viewer).delete(f"{INVITATIONS}{invitation.pk}/").status_code == 403
    assert Invitation.objects.filter(pk=invitation.pk).exists()


def test_an_accepted_invitation_cannot_be_withdrawn(
    api_client: Any, workspace: Workspace, owner: Any, outsider: Any
) -> None:
    invitation, token = member_invite(actor=owner, workspace=workspace, email="oscar@example.com", role="member")
    invitation_accept(user=outsider, token=token)

    response = api_client(owner).delete(f"{INVITATIONS}{invitation.pk}/")

    assert response.status_code == 400 and "remove the member" in response.json()["invitation"][0]


def test_an_invitation_of_another_workspace_is_404_under_this_slug(
    api_client: Any, workspace: Workspace, owner: Any, outsider: Any
) -> None:
    theirs = Workspace.objects.get(slug="oscars-workspace")
    invitation, _ = member_invite(actor=outsider, workspace=theirs, email="x@example.com", role="viewer")

    assert api_client(owner).delete(f"{INVITATIONS}{invitation.pk}/").status_code == 404
    assert Invitation.objects.filter(pk=invitation.pk).exists()


def test_the_invitee_joins_with_the_token(api_client: Any, workspace: Workspace, owner: Any, outsider: Any) -> None:
    _, token = member_invite(actor=owner, workspace=workspace, email="oscar@example.com", role="viewer")

    response = api_client(outsider).post(ACCEPT, {"token": token}, format="json")

    assert response.status_code == 200
    assert response.json()["workspace"]["slug"] == "vision-team" and response.json()["role"] == "viewer"
    assert Membership.objects.get(user=outsider, workspace=workspace).role == Role.VIEWER
    assert api_client(outsider).get("/api/v1/workspaces/vision-team/").status_code == 200


def test_a_token_works_once(api_client: Any, workspace: Workspace, owner: Any, outsider: Any) -> None:
    _, token = member_invite(actor=owner, workspace=workspace, email="oscar@example.com", role="viewer")
    api_client(outsider).post(ACCEPT, {"token": token}, format="json")

    assert api_client(outsider).post(ACCEPT, {"token": token}, format="json").status_code == 404


def test_an_unknown_token_is_404(api_client: Any, outsider: Any) -> None:
    assert api_client(outsider).post(ACCEPT, {"token": "made-up"}, format="json").status_code == 404


def test_an_expired_token_is_400_naming_the_token(
    api_client: Any, workspace: Workspace, owner: Any, outsider: Any
) -> None:
    invitation, token = member_invite(actor=owner, workspace=workspace, email="oscar@example.com", role="viewer")
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    response = api_client(outsider).post(ACCEPT, {"token": token}, format="json")

    assert response.status_code == 400 and "expired" in response.json()["token"][0]
    assert not Membership.objects.filter(user=outsider, workspace=workspace).exists()


@pytest.mark.parametrize(("body", "field"), [({}, "token"), ({"token": "x", "workspace": "vision-team"}, "workspace")])
def test_accepting_with_bad_input_is_400_naming_the_field(
    api_client: Any, outsider: Any, body: dict[str, Any], field: str
) -> None:
    response = api_client(outsider).post(ACCEPT, body, format="json")

    assert response.status_code == 400 and field in response.json()


def test_anonymous_users_cannot_accept(workspace: Workspace, owner: Any, api_client: Any) -> None:
    _, token = member_invite(actor=owner, workspace=workspace, email="oscar@example.com", role="viewer")

    assert api_client(None).post(ACCEPT, {"token": token}, format="json").status_code == 401
    assert Invitation.objects.get().accepted_at is None
