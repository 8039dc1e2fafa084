"""Reads on teams (accounts.selectors): every read is scoped to the workspaces of the user asking."""
from __future__ import annotations

from typing import Any

import pytest

from accounts.errors import NotFound
from accounts.models import AuditEntry, Membership, Workspace
from accounts.selectors import audit_list, membership_list, workspace_get, workspace_list
from accounts.services import membership_add, workspace_create
from tests.conftest import make_user


def slugs(workspaces: Any) -> set[str]:
    return {workspace.slug for workspace in workspaces}


def test_workspace_list_holds_own_and_shared_workspaces(
    owner: Any, workspace: Workspace, member: Any
) -> None:
    assert slugs(workspace_list(user=owner)) == {"olivias-workspace", "vision-team"}
    assert slugs(workspace_list(user=member)) == {"mias-workspace", "vision-team"}


def test_workspace_list_hides_other_workspaces_from_outsider(
    workspace: Workspace, outsider: Any
) -> None:
    assert slugs(workspace_list(user=outsider)) == {"oscars-workspace"}


def test_workspace_list_has_no_duplicates(owner: Any, workspace: Workspace) -> None:
    for username in ("nina", "sam", "tom"):
        membership_add(actor=owner, workspace=workspace, user=make_user(username), role="viewer")

    listed = list(workspace_list(user=owner))
    assert len(listed) == len(set(listed)) == 2


def test_member_gets_workspace_by_slug(workspace: Workspace, viewer: Any) -> None:
    assert workspace_get(user=viewer, slug="vision-team") == workspace


def test_outsider_gets_not_found_for_another_workspace(workspace: Workspace, outsider: Any) -> None:
    with pytest.raises(NotFound) as error:
        workspace_get(user=outsider, slug=workspace.slug)

    assert "vision-team" in error.value.message
    # The same answer as for a slug that does not exist: nothing confirms the workspace.
    with pytest.raises(NotFound) as missing:
        workspace_get(user=outsider, slug="no-such-workspace")
    assert str(error.value).replace("vision-team", "X") == str(missing.value).replace(
        "no-such-workspace", "X"
    )


def test_former_member_loses_access(workspace: Workspace, member: Any) -> None:
    Membership.objects.filter(user=member, workspace=workspace).delete()

    with pytest.raises(NotFound):
        workspace_get(user=member, slug=workspace.slug)


def test_superuser_sees_all_workspaces(workspace: Workspace, outsider: Any) -> None:
    root = make_user("root", is_superuser=True, is_staff=True)

    assert slugs(workspace_list(user=root)) == set(Workspace.objects.values_list("slug", flat=True))
    assert {"vision-team", "oscars-workspace", "roots-workspace"} <= slugs(workspace_list(user=root))
    assert workspace_get(user=root, slug=workspace.slug) == workspace


def test_staff_without_superuser_is_scoped(workspace: Workspace) -> None:
    staff = make_user("stan", is_staff=True)

    assert slugs(workspace_list(user=staff)) == {"stans-workspace"}
    with pytest.raises(NotFound):
        workspace_get(user=staff, slug=workspace.slug)


def test_membership_list_only_for_members(
    owner: Any, workspace: Workspace, member: Any, outsider: Any
) -> None:
    assert {m.user.get_username() for m in membership_list(user=member, workspace=workspace)} == {
        "olivia",
        "mia",
    }
    assert not membership_list(user=outsider, workspace=workspace).exists()


def test_audit_list_only_for_members(owner: Any, workspace: Workspace, outsider: Any) -> None:
    workspace_create(owner=outsider, name="Outsider lab")

    entries = list(audit_list(user=owner, workspace=workspace))
    assert [entry.action for entry in entries] == ["workspace.create"]
    assert all(entry.workspace_id == workspace.pk for entry in entries)
    assert not audit_list(user=outsider, workspace=workspace).exists()
    assert AuditEntry.objects.exclude(workspace=workspace).exists()
