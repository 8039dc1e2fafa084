"""Writes on teams. Every membership rule lives here, and only here:

* only owners and admins manage members; only owners grant the owner role or touch an
  owner's membership (a member may always leave);
* a workspace always keeps at least one owner (the workspace row is locked while owners are
  counted, so two concurrent demotions cannot both pass);
* viewers only read (checked by ``require_role`` wherever a write happens).

Each service is keyword-only, runs in one transaction and records an audit entry in it.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.errors import NotFound, PermissionDenied, ValidationError
from accounts.models import AuditEntry, Invitation, Membership, Role, Workspace

ROLE_NAMES = ", ".join(role.value for role in Role)


def parse_role(value: str, *, field: str = "role") -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValidationError(f"Unknown role {value!r}; allowed: {ROLE_NAMES}.", field=field) from None


def role_of(*, user: AbstractBaseUser, workspace: Workspace) -> Role | None:
    """The user's role in the workspace; superusers act as owners everywhere."""
    if getattr(user, "is_superuser", False):
        return Role.OWNER
    role = (
        Membership.objects.filter(user_id=user.pk, workspace_id=workspace.pk)
        .values_list("role", flat=True)
        .first()
    )
    return Role(role) if role else None


def require_role(*, user: AbstractBaseUser, workspace: Workspace, at_least: Role) -> Role:
    """Raise ``NotFound`` for outsiders (never confirm the workspace exists) and
    ``PermissionDenied`` for members whose role is too low."""
    role = role_of(user=user, workspace=workspace)
    if role is None:
        raise NotFound("Workspace not found.")
    if not role.at_least(at_least):
        raise PermissionDenied(
            f"This needs the {at_least.label.lower()} role or higher in {workspace.name!r}; "
            f"you are {role.label.lower()}."
        )
    return role


def audit_record(
    *,
    actor: AbstractBaseUser | None,
    action: str,
    target: models.Model,
    workspace: Workspace | None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    return AuditEntry.objects.create(
        workspace=workspace,
        actor=actor if actor is not None and actor.pk else None,
        actor_repr=actor.get_username() if actor is not None else "",
        action=action,
        target_type=target._meta.label,
        target_id=str(target.pk),
        target_repr=str(target)[:200],
        details=details or {},
    )


_SLUG_MAX = Workspace._meta.get_field("slug").max_length or 60


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "workspace"
    slug, n = base, 1
    while Workspace.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def workspace_create(
    *, owner: AbstractBaseUser, name: str, slug: str | None = None, personal: bool = False
) -> Workspace:
    name = name.strip()
    if not name:
        raise ValidationError("A workspace needs a name.", field="name")
    if len(name) > 100:
        raise ValidationError("A workspace name has at most 100 characters.", field="name")
    derived = slug is None
    if slug is None:
        slug = _unique_slug(name)
    elif slug != slugify(slug) or not slug:
        raise ValidationError(
            f"Slug {slug!r} is not allowed; use lowercase letters, digits and hyphens.", field="slug"
        )
    elif len(slug) > _SLUG_MAX:
        raise ValidationError(f"A slug has at most {_SLUG_MAX} characters.", field="slug")
    elif Workspace.objects.filter(slug=slug).exists():
        raise ValidationError(f"The slug {slug!r} is taken; choose another.", field="slug")
    try:
        with transaction.atomic():
            workspace = Workspace.objects.create(name=name, slug=slug, personal=personal)
    except IntegrityError:
        if not derived:
            raise ValidationError(f"The slug {slug!r} is taken; choose another.", field="slug") from None
        # Another workspace took the derived slug between the check and the insert.
        with transaction.atomic():
            workspace = Workspace.objects.create(
                name=name, slug=f"{slug[:50]}-{secrets.token_hex(3)}", personal=personal
            )
    Membership.objects.create(user=owner, workspace=workspace, role=Role.OWNER)
    audit_record(actor=owner, action="workspace.create", target=workspace, workspace=workspace)
    return workspace


def _require_can_manage(*, actor: AbstractBaseUser, workspace: Workspace, role: Role) -> Role:
    actor_role = require_role(user=actor, workspace=workspace, at_least=Role.ADMIN)
    if role == Role.OWNER and actor_role != Role.OWNER:
        raise PermissionDenied("Only an owner can make someone an owner.")
    return actor_role


@transaction.atomic
def membership_add(
    *, actor: AbstractBaseUser, workspace: Workspace, user: AbstractBaseUser, role: str
) -> Membership:
    parsed = parse_role(role)
    _require_can_manage(actor=actor, workspace=workspace, role=parsed)
    if Membership.objects.filter(workspace=workspace, user_id=user.pk).exists():
        raise ValidationError(
            f"{user.get_username()} is already a member of {workspace.name!r}.", field="user"
        )
    try:
        with transaction.atomic():
            membership = Membership.objects.create(workspace=workspace, user=user, role=parsed)
    except IntegrityError:  # a concurrent add won the race
        raise ValidationError(
            f"{user.get_username()} is already a member of {workspace.name!r}.", field="user"
        ) from None
    audit_record(
        actor=actor,
        action="membership.add",
        target=membership,
        workspace=workspace,
        details={"user": user.get_username(), "role": parsed.value},
    )
    return membership


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def member_invite(
    *,
    actor: AbstractBaseUser,
    workspace: Workspace,
    email: str,
    role: str,
    valid_for: timedelta = timedelta(days=7),
) -> tuple[Invitation, str]:
    """Create an invitation; returns it with the one-time token, which is stored hashed and
    so can be shown only now (the portal turns it into a link)."""
    parsed = parse_role(role)
    _require_can_manage(actor=actor, workspace=workspace, role=parsed)
    email = email.strip().lower()
    try:
        validate_email(email)
    except DjangoValidationError:
        raise ValidationError(f"{email!r} is not an e-mail address.", field="email") from None
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        workspace=workspace,
        email=email,
        role=parsed,
        token_hash=_token_hash(token),
        invited_by=actor,
        expires_at=timezone.now() + valid_for,
    )
    audit_record(
        actor=actor,
        action="membership.invite",
        target=invitation,
        workspace=workspace,
        details={"email": email, "role": parsed.value},
    )
    return invitation, token


@transaction.atomic
def invitation_accept(*, user: AbstractBaseUser, token: str) -> Membership:
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("workspace")
        .filter(token_hash=_token_hash(token))
        .first()
    )
    if invitation is None or invitation.accepted_at is not None:
        raise NotFound("This invitation does not exist or was already used.")
    if invitation.expires_at < timezone.now():
        raise ValidationError("This invitation has expired; ask for a new one.", field="token")
    membership, created = Membership.objects.get_or_create(
        workspace=invitation.workspace, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        actor=user,
        action="membership.accept_invitation",
        target=membership,
        workspace=invitation.workspace,
        details={"role": membership.role, "new_member": created},
    )
    return membership


def _lock_membership(membership: Membership) -> tuple[Workspace, Membership]:
    # Lock the workspace first, then re-read the membership: every owner-count check for a
    # workspace runs under this one lock.
    workspace = Workspace.objects.select_for_update().get(pk=membership.workspace_id)
    try:
        fresh = Membership.objects.select_related("user").get(pk=membership.pk)
    except Membership.DoesNotExist:
        raise NotFound("This membership no longer exists.") from None
    return workspace, fresh


def _require_other_owner(workspace: Workspace, membership: Membership, doing: str) -> None:
    others = Membership.objects.filter(workspace=workspace, role=Role.OWNER).exclude(pk=membership.pk)
    if not others.exists():
        raise ValidationError(
            f"Cannot {doing} the last owner of {workspace.name!r}; make another member an owner first.",
            field="role",
        )


@transaction.atomic
def membership_change_role(
    *, actor: AbstractBaseUser, membership: Membership, role: str
) -> Membership:
    parsed = parse_role(role)
    workspace, membership = _lock_membership(membership)
    actor_role = _require_can_manage(actor=actor, workspace=workspace, role=parsed)
    old = Role(membership.role)
    if old == Role.OWNER and actor_role != Role.OWNER:
        raise PermissionDenied("Only an owner can change an owner's role.")
    if old == parsed:
        return membership
    if old == Role.OWNER:
        _require_other_owner(workspace, membership, "demote")
    membership.role = parsed
    membership.save(update_fields=["role"])
    audit_record(
        actor=actor,
        action="membership.change_role",
        target=membership,
        workspace=workspace,
        details={"user": membership.user.get_username(), "from": old.value, "to": parsed.value},
    )
    return membership


@transaction.atomic
def membership_remove(*, actor: AbstractBaseUser, membership: Membership) -> None:
    workspace, membership = _lock_membership(membership)
    leaving = membership.user_id == actor.pk
    if not leaving:
        actor_role = require_role(user=actor, workspace=workspace, at_least=Role.ADMIN)
        if membership.role == Role.OWNER and actor_role != Role.OWNER:
            raise PermissionDenied("Only an owner can remove an owner.")
    if membership.role == Role.OWNER:
        _require_other_owner(workspace, membership, "remove")
    audit_record(
        actor=actor,
        action="membership.leave" if leaving else "membership.remove",
        target=membership,
        workspace=workspace,
        details={"user": membership.user.get_username(), "role": membership.role},
    )
    membership.delete()
