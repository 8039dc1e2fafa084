"""Reads on teams, always scoped by the user asking."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import CharField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from accounts.errors import NotFound
from accounts.models import ApiToken, AuditEntry, Invitation, Membership, Role, Workspace


def workspace_list(*, user: AbstractBaseUser) -> QuerySet[Workspace]:
    if getattr(user, "is_superuser", False):
        return Workspace.objects.all()
    return Workspace.objects.filter(memberships__user_id=user.pk)


def workspace_list_with_roles(*, user: AbstractBaseUser) -> QuerySet[Workspace]:
    """The user's workspaces, each annotated with ``role``: the user's role in it
    (superusers act as owners where they are not members)."""
    own_role = Membership.objects.filter(workspace=OuterRef("pk"), user_id=user.pk).values("role")[:1]
    fallback = Role.OWNER.value if getattr(user, "is_superuser", False) else None
    return workspace_list(user=user).annotate(
        role=Coalesce(Subquery(own_role), Value(fallback, output_field=CharField()))
    )


def workspace_get(*, user: AbstractBaseUser, slug: str) -> Workspace:
    workspace = workspace_list(user=user).filter(slug=slug).first()
    if workspace is None:
        raise NotFound(f"No workspace {slug!r} that you belong to.")
    return workspace


def workspace_get_with_role(*, user: AbstractBaseUser, slug: str) -> Workspace:
    """``workspace_get`` with the user's ``role`` annotated (see ``workspace_list_with_roles``)."""
    workspace = workspace_list_with_roles(user=user).filter(slug=slug).first()
    if workspace is None:
        raise NotFound(f"No workspace {slug!r} that you belong to.")
    return workspace


def membership_list(*, user: AbstractBaseUser, workspace: Workspace) -> QuerySet[Membership]:
    return Membership.objects.filter(
        workspace__in=workspace_list(user=user), workspace=workspace
    ).select_related("user")


def membership_get(*, user: AbstractBaseUser, workspace: Workspace, membership_id: int) -> Membership:
    membership = membership_list(user=user, workspace=workspace).filter(pk=membership_id).first()
    if membership is None:
        raise NotFound(f"No membership {membership_id} in this workspace.")
    return membership


def invitation_list(*, user: AbstractBaseUser, workspace: Workspace) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        workspace__in=workspace_list(user=user), workspace=workspace
    ).select_related("invited_by", "accepted_by")


def invitation_get(*, user: AbstractBaseUser, workspace: Workspace, invitation_id: int) -> Invitation:
    invitation = invitation_list(user=user, workspace=workspace).filter(pk=invitation_id).first()
    if invitation is None:
        raise NotFound(f"No invitation {invitation_id} in this workspace.")
    return invitation


def audit_list(*, user: AbstractBaseUser, workspace: Workspace) -> QuerySet[AuditEntry]:
    return AuditEntry.objects.filter(workspace__in=workspace_list(user=user), workspace=workspace)


def token_list(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """The user's own API tokens (never anyone else's, superusers included)."""
    return ApiToken.objects.filter(user_id=user.pk)


def token_get(*, user: AbstractBaseUser, token_id: int) -> ApiToken:
    token = token_list(user=user).filter(pk=token_id).first()
    if token is None:
        raise NotFound(f"No token {token_id} of yours.")
    return token


def invitation_get_pending(*, token: str) -> Invitation | None:
    """The unused, unexpired invitation with this token, if any. The token is the
    credential (there is no user to scope by yet): only its hash is compared."""
    from django.utils import timezone

    from accounts.authentication import hash_key

    if not token or len(token) > 200:
        return None
    return (
        Invitation.objects.select_related("workspace")
        .filter(token_hash=hash_key(token), accepted_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )
