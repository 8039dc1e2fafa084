"""Reads on teams, always scoped by the user asking."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from accounts.errors import NotFound
from accounts.models import AuditEntry, Membership, Workspace


def workspace_list(*, user: AbstractBaseUser) -> QuerySet[Workspace]:
    if getattr(user, "is_superuser", False):
        return Workspace.objects.all()
    return Workspace.objects.filter(memberships__user_id=user.pk)


def workspace_get(*, user: AbstractBaseUser, slug: str) -> Workspace:
    workspace = workspace_list(user=user).filter(slug=slug).first()
    if workspace is None:
        raise NotFound(f"No workspace {slug!r} that you belong to.")
    return workspace


def membership_list(*, user: AbstractBaseUser, workspace: Workspace) -> QuerySet[Membership]:
    return Membership.objects.filter(
        workspace__in=workspace_list(user=user), workspace=workspace
    ).select_related("user")


def audit_list(*, user: AbstractBaseUser, workspace: Workspace) -> QuerySet[AuditEntry]:
    return AuditEntry.objects.filter(workspace__in=workspace_list(user=user), workspace=workspace)
