"""The outsider tries every workspace-scoped endpoint with every method: always 404, never
a 403 that would confirm the workspace exists, and nothing changes."""
from __future__ import annotations

from typing import Any

import pytest

from accounts.models import AuditEntry, Invitation, Membership, Workspace
from accounts.services import member_invite

BASE = "/api/v1/workspaces/vision-team"


def endpoints(membership: Membership, invitation: Invitation) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("get", f"{BASE}/", {}),
        ("patch", f"{BASE}/", {"name": "Mine"}),
        ("delete", f"{BASE}/", {}),
        ("get", f"{BASE}/members/", {}),
        ("post", f"{BASE}/members/", {"username": "oscar", "role": "owner"}),
        ("patch", f"{BASE}/members/{membership.pk}/", {"role": "viewer"}),
        ("delete", f"{BASE}/members/{membership.pk}/", {}),
        ("get", f"{BASE}/invitations/", {}),
        ("post", f"{BASE}/invitations/", {"email": "oscar@example.com", "role": "owner"}),
        ("delete", f"{BASE}/invitations/{invitation.pk}/", {}),
        ("get", f"{BASE}/audit/", {}),
    ]


def test_the_outsider_gets_404_from_every_workspace_endpoint(
    api_client: Any, workspace: Workspace, owner: Any, member: Any, outsider: Any
) -> None:
    membership = Membership.objects.get(user=member, workspace=workspace)
    invitation, _ = member_invite(actor=owner, workspace=workspace, email="nina@example.com", role="viewer")
    audit_before = AuditEntry.objects.count()
    client = api_client(outsider)

    for method, url, body in endpoints(membership, invitation):
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.status_code)

    assert Membership.objects.filter(workspace=workspace).count() == 2
    assert Invitation.objects.filter(workspace=workspace).count() == 1
    assert Workspace.objects.get(pk=workspace.pk).name == "Vision team"
    assert AuditEntry.objects.count() == audit_before


@pytest.mark.parametrize("slug", ["vision-team", "no-such-workspace"])
def test_a_workspace_that_is_not_yours_reads_as_one_that_does_not_exist(
    api_client: Any, workspace: Workspace, outsider: Any, slug: str
) -> None:
    response = api_client(outsider).get(f"/api/v1/workspaces/{slug}/members/")

    assert response.status_code == 404
    assert response.json()["detail"] == f"No workspace {slug!r} that you belong to."


def test_anonymous_users_get_401_from_workspace_endpoints(api_client: Any, workspace: Workspace) -> None:
    client = api_client(None)

    for url in (f"{BASE}/", f"{BASE}/members/", f"{BASE}/invitations/", f"{BASE}/audit/", "/api/v1/workspaces/"):
        assert client.get(url).status_code == 401, url
