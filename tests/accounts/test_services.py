"""Writes on teams (accounts.services): the membership rules, invitations and the audit trail.

Every refusal is checked twice: the error a user reads, and that nothing stored changed
(re-read from the database, audit log included).
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from accounts import services
from accounts.errors import NotFound, PermissionDenied, ValidationError
from accounts.models import AuditEntry, Invitation, Membership, Role, Workspace
from accounts.services import (
    invitation_accept,
    member_invite,
    membership_add,
    membership_change_role,
    membership_remove,
    workspace_create,
)
from tests.conftest import make_user


def membership_of(user: Any, workspace: Workspace) -> Membership:
    return Membership.objects.get(user=user, workspace=workspace)


def role_in_db(user: Any, workspace: Workspace) -> str | None:
    return (
        Membership.objects.filter(user=user, workspace=workspace)
        .values_list("role", flat=True)
        .first()
    )


def latest_audit() -> AuditEntry:
    return AuditEntry.objects.order_by("-id").first()  # type: ignore[return-value]


def assert_audited(
    entry: AuditEntry, *, actor: Any, action: str, target: Any, workspace: Workspace
) -> None:
    assert entry.actor_id == actor.pk
    assert entry.actor_repr == actor.get_username()
    assert entry.action == action
    assert entry.target_type == target._meta.label
    assert entry.target_id == str(target.pk)
    assert entry.workspace_id == workspace.pk


@pytest.fixture
def audit_count() -> Any:
    """Call to get the number of audit entries now; compare before and after a refusal."""
    return lambda: AuditEntry.objects.count()


# --- Personal workspace and workspace_create ---------------------------------------------


def test_new_user_gets_personal_workspace_as_owner(db: None) -> None:
    user = make_user("nora")

    memberships = Membership.objects.filter(user=user).select_related("workspace")
    assert len(memberships) == 1
    personal = memberships[0].workspace
    assert personal.personal is True
    assert memberships[0].role == Role.OWNER
    assert personal.name == "nora's workspace"
    assert personal.slug == "noras-workspace"
    assert_audited(
        AuditEntry.objects.get(workspace=personal),
        actor=user,
        action="workspace.create",
        target=personal,
        workspace=personal,
    )


def test_saving_an_existing_user_makes_no_second_workspace(db: None) -> None:
    user = make_user("nora")
    user.first_name = "Nora"
    user.save()

    assert Membership.objects.filter(user=user).count() == 1


def test_user_with_longest_allowed_username_gets_personal_workspace(db: None) -> None:
    user = make_user("u" * 150)

    personal = Workspace.objects.get(memberships__user=user)
    assert personal.personal is True
    assert len(personal.name) <= 100
    assert personal.name.endswith("'s workspace")
    assert len(personal.slug) <= 60


def test_workspace_create_makes_creator_owner_and_audits(owner: Any) -> None:
    workspace = workspace_create(owner=owner, name="  Vision team  ")

    workspace.refresh_from_db()
    assert workspace.name == "Vision team"
    assert workspace.slug == "vision-team"
    assert workspace.personal is False
    assert role_in_db(owner, workspace) == Role.OWNER
    assert_audited(
        latest_audit(), actor=owner, action="workspace.create", target=workspace, workspace=workspace
    )


def test_workspace_create_dedupes_slug_from_name(owner: Any) -> None:
    first = workspace_create(owner=owner, name="Vision team")
    second = workspace_create(owner=owner, name="Vision Team")
    third = workspace_create(owner=owner, name="vision-team")

    assert [first.slug, second.slug, third.slug] == ["vision-team", "vision-team-2", "vision-team-3"]


def test_workspace_create_name_without_slug_characters_gets_fallback_slug(owner: Any) -> None:
    workspace = workspace_create(owner=owner, name="日本語")

    assert workspace.slug == "workspace"
    assert workspace.name == "日本語"


def test_workspace_create_with_explicit_slug(owner: Any) -> None:
    workspace = workspace_create(owner=owner, name="Vision team", slug="cv")

    assert Workspace.objects.get(pk=workspace.pk).slug == "cv"


@pytest.mark.parametrize("slug", ["Vision", "has space", "ümlaut", "-edge-", "a/b", ""])
def test_workspace_create_refuses_bad_slug(owner: Any, audit_count: Any, slug: str) -> None:
    workspaces_before, audits_before = Workspace.objects.count(), audit_count()

    with pytest.raises(ValidationError) as error:
        workspace_create(owner=owner, name="Vision team", slug=slug)

    assert error.value.field == "slug"
    assert "lowercase letters, digits and hyphens" in error.value.message
    assert Workspace.objects.count() == workspaces_before
    assert audit_count() == audits_before


def test_workspace_create_refuses_slug_longer_than_the_column(owner: Any) -> None:
    workspaces_before = Workspace.objects.count()

    with pytest.raises(ValidationError) as error:
        workspace_create(owner=owner, name="Vision team", slug="a" * 61)

    assert error.value.field == "slug"
    assert "60" in error.value.message
    assert Workspace.objects.count() == workspaces_before


def test_workspace_create_refuses_taken_slug(owner: Any, workspace: Workspace) -> None:
    workspaces_before = Workspace.objects.count()

    with pytest.raises(ValidationError) as error:
        workspace_create(owner=owner, name="Another", slug=workspace.slug)

    assert error.value.field == "slug"
    assert "taken" in error.value.message
    assert Workspace.objects.count() == workspaces_before


@pytest.mark.parametrize("name", ["", "   "])
def test_workspace_create_refuses_empty_name(owner: Any, audit_count: Any, name: str) -> None:
    workspaces_before, audits_before = Workspace.objects.count(), audit_count()

    with pytest.raises(ValidationError) as error:
        workspace_create(owner=owner, name=name)

    assert error.value.field == "name"
    assert Workspace.objects.count() == workspaces_before
    assert audit_count() == audits_before


def test_workspace_create_refuses_name_over_100_characters(owner: Any) -> None:
    with pytest.raises(ValidationError) as error:
        workspace_create(owner=owner, name="x" * 101)

    assert error.value.field == "name"
    assert "100" in error.value.message


# --- membership_add ----------------------------------------------------------------------------


@pytest.mark.parametrize("actor_name", ["owner", "admin_user"])
def test_owner_and_admin_can_add_member(
    request: pytest.FixtureRequest, workspace: Workspace, actor_name: str
) -> None:
    actor = request.getfixturevalue(actor_name)
    newcomer = make_user("nina")

    membership = membership_add(actor=actor, workspace=workspace, user=newcomer, role="member")

    assert role_in_db(newcomer, workspace) == Role.MEMBER
    entry = latest_audit()
    assert_audited(entry, actor=actor, action="membership.add", target=membership, workspace=workspace)
    assert entry.details == {"user": "nina", "role": "member"}


def test_owner_can_add_another_owner(owner: Any, workspace: Workspace) -> None:
    newcomer = make_user("nina")

    membership_add(actor=owner, workspace=workspace, user=newcomer, role="owner")

    assert role_in_db(newcomer, workspace) == Role.OWNER


@pytest.mark.parametrize("actor_name", ["member", "viewer"])
def test_member_and_viewer_cannot_add_member(
    request: pytest.FixtureRequest, workspace: Workspace, audit_count: Any, actor_name: str
) -> None:
    actor = request.getfixturevalue(actor_name)
    newcomer = make_user("nina")
    audits_before = audit_count()

    with pytest.raises(PermissionDenied) as error:
        membership_add(actor=actor, workspace=workspace, user=newcomer, role="viewer")

    assert "admin role or higher" in error.value.message
    assert role_in_db(newcomer, workspace) is None
    assert audit_count() == audits_before


def test_outsider_adding_member_gets_not_found(
    workspace: Workspace, outsider: Any, audit_count: Any
) -> None:
    newcomer = make_user("nina")
    audits_before = audit_count()

    with pytest.raises(NotFound) as error:
        membership_add(actor=outsider, workspace=workspace, user=newcomer, role="viewer")

    # Never confirm that someone else's workspace exists.
    assert workspace.name not in error.value.message
    assert role_in_db(newcomer, workspace) is None
    assert audit_count() == audits_before


def test_outsider_cannot_add_themselves(workspace: Workspace, outsider: Any) -> None:
    with pytest.raises(NotFound):
        membership_add(actor=outsider, workspace=workspace, user=outsider, role="owner")

    assert role_in_db(outsider, workspace) is None


def test_admin_cannot_grant_owner(
    workspace: Workspace, admin_user: Any, audit_count: Any
) -> None:
    newcomer = make_user("nina")
    audits_before = audit_count()

    with pytest.raises(PermissionDenied) as error:
        membership_add(actor=admin_user, workspace=workspace, user=newcomer, role="owner")

    assert "owner" in error.value.message
    assert role_in_db(newcomer, workspace) is None
    assert audit_count() == audits_before


def test_adding_an_existing_member_is_refused(
    owner: Any, workspace: Workspace, member: Any, audit_count: Any
) -> None:
    audits_before = audit_count()

    with pytest.raises(ValidationError) as error:
        membership_add(actor=owner, workspace=workspace, user=member, role="admin")

    assert error.value.field == "user"
    assert "already a member" in error.value.message
    assert role_in_db(member, workspace) == Role.MEMBER
    assert Membership.objects.filter(workspace=workspace, user=member).count() == 1
    assert audit_count() == audits_before


def test_unknown_role_is_refused_listing_allowed_roles(
    owner: Any, workspace: Workspace, audit_count: Any
) -> None:
    newcomer = make_user("nina")
    memberships_before = set(Membership.objects.values_list("pk", "user_id", "workspace_id", "role"))
    audits_before = audit_count()

    with pytest.raises(ValidationError) as error:
        membership_add(actor=owner, workspace=workspace, user=newcomer, role="boss")

    assert error.value.field == "role"
    assert "'boss'" in error.value.message
    for allowed in ("owner", "admin", "member", "viewer"):
        assert allowed in error.value.message
    assert set(Membership.objects.values_list("pk", "user_id", "workspace_id", "role")) == (
        memberships_before
    )
    assert audit_count() == audits_before


# --- member_invite and invitation_accept --------------------------------------------------------


def test_invite_stores_only_the_token_hash(owner: Any, workspace: Workspace) -> None:
    invitation, token = member_invite(
        actor=owner, workspace=workspace, email="  Nina@Example.COM ", role="member"
    )

    stored = Invitation.objects.get(pk=invitation.pk)
    assert stored.email == "nina@example.com"
    assert stored.role == Role.MEMBER
    assert stored.invited_by_id == owner.pk
    assert len(token) >= 32
    assert token not in stored.token_hash
    assert len(stored.token_hash) == 64
    stored_text = [str(value) for value in Invitation.objects.values_list().get(pk=invitation.pk)]
    assert all(token not in value for value in stored_text)
    entry = latest_audit()
    assert_audited(
        entry, actor=owner, action="membership.invite", target=invitation, workspace=workspace
    )
    assert token not in str(entry.details)


def test_invited_user_joins_with_token_once(owner: Any, workspace: Workspace) -> None:
    invitation, token = member_invite(
        actor=owner, workspace=workspace, email="nina@example.com", role="viewer"
    )
    newcomer = make_user("nina")

    membership = invitation_accept(user=newcomer, token=token)

    assert role_in_db(newcomer, workspace) == Role.VIEWER
    stored = Invitation.objects.get(pk=invitation.pk)
    assert stored.accepted_by_id == newcomer.pk
    assert stored.accepted_at is not None
    assert_audited(
        latest_audit(),
        actor=newcomer,
        action="membership.accept_invitation",
        target=membership,
        workspace=workspace,
    )

    someone_else = make_user("sam")
    with pytest.raises(NotFound):
        invitation_accept(user=someone_else, token=token)
    assert role_in_db(someone_else, workspace) is None
    assert Invitation.objects.get(pk=invitation.pk).accepted_by_id == newcomer.pk


def test_expired_invitation_is_refused(owner: Any, workspace: Workspace, audit_count: Any) -> None:
    invitation, token = member_invite(
        actor=owner, workspace=workspace, email="nina@example.com", role="member"
    )
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    newcomer = make_user("nina")
    audits_before = audit_count()

    with pytest.raises(ValidationError) as error:
        invitation_accept(user=newcomer, token=token)

    assert error.value.field == "token"
    assert "expired" in error.value.message
    assert role_in_db(newcomer, workspace) is None
    assert Invitation.objects.get(pk=invitation.pk).accepted_at is None
    assert audit_count() == audits_before


def test_unknown_token_is_not_found(db: None) -> None:
    newcomer = make_user("nina")

    with pytest.raises(NotFound):
        invitation_accept(user=newcomer, token="not-a-token")


def test_accepting_as_existing_member_keeps_their_role(
    owner: Any, workspace: Workspace, admin_user: Any
) -> None:
    _, token = member_invite(actor=owner, workspace=workspace, email="adam@example.com", role="viewer")

    invitation_accept(user=admin_user, token=token)

    assert role_in_db(admin_user, workspace) == Role.ADMIN


@pytest.mark.parametrize("actor_name", ["member", "viewer"])
def test_member_and_viewer_cannot_invite(
    request: pytest.FixtureRequest, workspace: Workspace, audit_count: Any, actor_name: str
) -> None:
    actor = request.getfixturevalue(actor_name)
    audits_before = audit_count()

    with pytest.raises(PermissionDenied):
        member_invite(actor=actor, workspace=workspace, email="nina@example.com", role="viewer")

    assert not Invitation.objects.exists()
    assert audit_count() == audits_before


def test_outsider_invite_gets_not_found(workspace: Workspace, outsider: Any) -> None:
    with pytest.raises(NotFound):
        member_invite(actor=outsider, workspace=workspace, email="nina@example.com", role="viewer")

    assert not Invitation.objects.exists()


def test_admin_cannot_invite_an_owner(workspace: Workspace, admin_user: Any) -> None:
    with pytest.raises(PermissionDenied):
        member_invite(actor=admin_user, workspace=workspace, email="nina@example.com", role="owner")

    assert not Invitation.objects.exists()


def test_invite_refuses_bad_email_and_unknown_role(owner: Any, workspace: Workspace) -> None:
    with pytest.raises(ValidationError) as bad_email:
        member_invite(actor=owner, workspace=workspace, email="nina", role="member")
    with pytest.raises(ValidationError) as bad_role:
        member_invite(actor=owner, workspace=workspace, email="nina@example.com", role="boss")

    assert bad_email.value.field == "email"
    assert bad_role.value.field == "role"
    assert not Invitation.objects.exists()


# --- membership_change_role ------------------------------------------------------------------------


def test_last_owner_cannot_be_demoted(owner: Any, workspace: Workspace, audit_count: Any) -> None:
    audits_before = audit_count()

    with pytest.raises(ValidationError) as error:
        membership_change_role(
            actor=owner, membership=membership_of(owner, workspace), role="admin"
        )

    assert error.value.field == "role"
    assert "last owner" in error.value.message
    assert role_in_db(owner, workspace) == Role.OWNER
    assert audit_count() == audits_before


def test_owner_can_step_down_when_another_owner_remains(owner: Any, workspace: Workspace) -> None:
    second = make_user("sam")
    membership_add(actor=owner, workspace=workspace, user=second, role="owner")

    membership = membership_change_role(
        actor=owner, membership=membership_of(owner, workspace), role="member"
    )

    assert role_in_db(owner, workspace) == Role.MEMBER
    assert role_in_db(second, workspace) == Role.OWNER
    entry = latest_audit()
    assert_audited(
        entry, actor=owner, action="membership.change_role", target=membership, workspace=workspace
    )
    assert entry.details == {"user": "olivia", "from": "owner", "to": "member"}


def test_owner_promotes_member_to_admin(owner: Any, workspace: Workspace, member: Any) -> None:
    membership_change_role(actor=owner, membership=membership_of(member, workspace), role="admin")

    assert role_in_db(member, workspace) == Role.ADMIN


def test_admin_can_change_member_role(workspace: Workspace, admin_user: Any, viewer: Any) -> None:
    membership_change_role(
        actor=admin_user, membership=membership_of(viewer, workspace), role="member"
    )

    assert role_in_db(viewer, workspace) == Role.MEMBER


def test_admin_cannot_change_owner_role(
    owner: Any, workspace: Workspace, admin_user: Any, audit_count: Any
) -> None:
    second = make_user("sam")
    membership_add(actor=owner, workspace=workspace, user=second, role="owner")
    audits_before = audit_count()

    with pytest.raises(PermissionDenied) as error:
        membership_change_role(
            actor=admin_user, membership=membership_of(second, workspace), role="member"
        )

    assert "owner" in error.value.message
    assert role_in_db(second, workspace) == Role.OWNER
    assert audit_count() == audits_before


def test_admin_cannot_promote_to_owner(
    workspace: Workspace, admin_user: Any, member: Any
) -> None:
    with pytest.raises(PermissionDenied):
        membership_change_role(
            actor=admin_user, membership=membership_of(member, workspace), role="owner"
        )
    with pytest.raises(PermissionDenied):
        membership_change_role(
            actor=admin_user, membership=membership_of(admin_user, workspace), role="owner"
        )

    assert role_in_db(member, workspace) == Role.MEMBER
    assert role_in_db(admin_user, workspace) == Role.ADMIN


@pytest.mark.parametrize("actor_name", ["member", "viewer"])
def test_member_and_viewer_cannot_change_roles(
    request: pytest.FixtureRequest, workspace: Workspace, admin_user: Any, actor_name: str
) -> None:
    actor = request.getfixturevalue(actor_name)

    with pytest.raises(PermissionDenied):
        membership_change_role(
            actor=actor, membership=membership_of(actor, workspace), role="admin"
        )
    with pytest.raises(PermissionDenied):
        membership_change_role(
            actor=actor, membership=membership_of(admin_user, workspace), role="viewer"
        )

    assert role_in_db(actor, workspace) == actor_name
    assert role_in_db(admin_user, workspace) == Role.ADMIN


def test_outsider_changing_role_gets_not_found(
    workspace: Workspace, member: Any, outsider: Any
) -> None:
    with pytest.raises(NotFound):
        membership_change_role(
            actor=outsider, membership=membership_of(member, workspace), role="viewer"
        )

    assert role_in_db(member, workspace) == Role.MEMBER


def test_change_role_to_unknown_role_changes_nothing(
    owner: Any, workspace: Workspace, member: Any, audit_count: Any
) -> None:
    audits_before = audit_count()

    with pytest.raises(ValidationError) as error:
        membership_change_role(
            actor=owner, membership=membership_of(member, workspace), role="boss"
        )

    assert "owner, admin, member, viewer" in error.value.message
    assert role_in_db(member, workspace) == Role.MEMBER
    assert audit_count() == audits_before


def test_change_to_same_role_writes_no_audit(
    owner: Any, workspace: Workspace, member: Any, audit_count: Any
) -> None:
    audits_before = audit_count()

    membership_change_role(actor=owner, membership=membership_of(member, workspace), role="member")

    assert role_in_db(member, workspace) == Role.MEMBER
    assert audit_count() == audits_before


def test_change_role_uses_stored_role_not_stale_object(owner: Any, workspace: Workspace) -> None:
    second = make_user("sam")
    membership_add(actor=owner, workspace=workspace, user=second, role="owner")
    stale_owner_membership = membership_of(owner, workspace)
    membership_change_role(actor=second, membership=membership_of(second, workspace), role="admin")

    # The object still says "owner" for the other one, but the database now has one owner.
    with pytest.raises(ValidationError):
        membership_change_role(actor=owner, membership=stale_owner_membership, role="admin")

    assert role_in_db(owner, workspace) == Role.OWNER


# --- membership_remove ----------------------------------------------------------------------------


def test_last_owner_cannot_be_removed(owner: Any, workspace: Workspace, audit_count: Any) -> None:
    audits_before = audit_count()

    with pytest.raises(ValidationError) as error:
        membership_remove(actor=owner, membership=membership_of(owner, workspace))

    assert "last owner" in error.value.message
    assert role_in_db(owner, workspace) == Role.OWNER
    assert audit_count() == audits_before


def test_member_can_leave(workspace: Workspace, member: Any) -> None:
    membership = membership_of(member, workspace)

    membership_remove(actor=member, membership=membership)

    assert role_in_db(member, workspace) is None
    entry = latest_audit()
    assert_audited(entry, actor=member, action="membership.leave", target=membership, workspace=workspace)
    assert entry.details == {"user": "mia", "role": "member"}


def test_viewer_can_leave(workspace: Workspace, viewer: Any) -> None:
    membership_remove(actor=viewer, membership=membership_of(viewer, workspace))

    assert role_in_db(viewer, workspace) is None


def test_admin_removes_member(workspace: Workspace, admin_user: Any, member: Any) -> None:
    membership = membership_of(member, workspace)

    membership_remove(actor=admin_user, membership=membership)

    assert role_in_db(member, workspace) is None
    assert_audited(
        latest_audit(),
        actor=admin_user,
        action="membership.remove",
        target=membership,
        workspace=workspace,
    )


def test_admin_cannot_remove_owner(
    owner: Any, workspace: Workspace, admin_user: Any, audit_count: Any
) -> None:
    second = make_user("sam")
    membership_add(actor=owner, workspace=workspace, user=second, role="owner")
    audits_before = audit_count()

    with pytest.raises(PermissionDenied):
        membership_remove(actor=admin_user, membership=membership_of(second, workspace))

    assert role_in_db(second, workspace) == Role.OWNER
    assert audit_count() == audits_before


def test_owner_removes_other_owner(owner: Any, workspace: Workspace) -> None:
    second = make_user("sam")
    membership_add(actor=owner, workspace=workspace, user=second, role="owner")

    membership_remove(actor=owner, membership=membership_of(second, workspace))

    assert role_in_db(second, workspace) is None
    assert role_in_db(owner, workspace) == Role.OWNER


@pytest.mark.parametrize("actor_name", ["viewer", "member"])
def test_viewer_and_member_cannot_remove_others(
    request: pytest.FixtureRequest,
    workspace: Workspace,
    admin_user: Any,
    audit_count: Any,
    actor_name: str,
) -> None:
    actor = request.getfixturevalue(actor_name)
    other = make_user("nina")
    Membership.objects.create(user=other, workspace=workspace, role=Role.VIEWER)
    audits_before = audit_count()

    with pytest.raises(PermissionDenied):
        membership_remove(actor=actor, membership=membership_of(other, workspace))

    assert role_in_db(other, workspace) == Role.VIEWER
    assert audit_count() == audits_before


def test_outsider_removing_member_gets_not_found(
    workspace: Workspace, member: Any, outsider: Any
) -> None:
    with pytest.raises(NotFound):
        membership_remove(actor=outsider, membership=membership_of(member, workspace))

    assert role_in_db(member, workspace) == Role.MEMBER


def test_removing_a_membership_already_gone_is_not_found(
    owner: Any, workspace: Workspace, member: Any
) -> None:
    membership = membership_of(member, workspace)
    Membership.objects.filter(pk=membership.pk).delete()

    with pytest.raises(NotFound):
        membership_remove(actor=owner, membership=membership)


def test_superuser_acts_as_owner_everywhere(owner: Any, workspace: Workspace) -> None:
    root = make_user("root", is_superuser=True, is_staff=True)
    newcomer = make_user("nina")

    membership_add(actor=root, workspace=workspace, user=newcomer, role="owner")

    assert role_in_db(newcomer, workspace) == Role.OWNER
    assert role_in_db(root, workspace) is None


# --- Concurrency (PostgreSQL: row locks are what keep the last owner) ---------------------------


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
@pytest.mark.django_db(transaction=True)
def test_two_owners_stepping_down_at_once_leave_one_owner(
    owner: Any, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = make_user("sam")
    membership_add(actor=owner, workspace=workspace, user=second, role="owner")
    owners = [owner, second]
    memberships = [membership_of(user, workspace) for user in owners]

    # Hold each transaction open a moment after its owner count, so that without the lock
    # both counts would see two owners and both demotions would pass.
    count_owners = services._require_other_owner

    def slow_count(*args: Any, **kwargs: Any) -> None:
        count_owners(*args, **kwargs)
        time.sleep(0.3)

    monkeypatch.setattr(services, "_require_other_owner", slow_count)
    barrier = threading.Barrier(len(owners))
    outcomes: dict[str, object] = {}

    def step_down(user: Any, membership: Membership) -> None:
        try:
            barrier.wait(timeout=10)
            membership_change_role(actor=user, membership=membership, role="admin")
            outcomes[user.get_username()] = "demoted"
        except Exception as error:  # noqa: BLE001 (the assertion below reports it)
            outcomes[user.get_username()] = error
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=step_down, args=(user, membership))
        for user, membership in zip(owners, memberships)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not any(thread.is_alive() for thread in threads)
    results = list(outcomes.values())
    assert results.count("demoted") == 1, outcomes
    refusals = [result for result in results if result != "demoted"]
    assert len(refusals) == 1 and isinstance(refusals[0], ValidationError), outcomes
    assert "last owner" in refusals[0].message
    assert Membership.objects.filter(workspace=workspace, role=Role.OWNER).count() == 1
    assert AuditEntry.objects.filter(workspace=workspace, action="membership.change_role").count() == 1
