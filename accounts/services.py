"""Writes on teams. Every membership rule lives here, and only here:

* only owners and admins manage members; only owners grant the owner role or touch an
  owner's membership (a member may always leave);
* a workspace always keeps at least one owner (the workspace row is locked while owners are
  counted, so two concurrent demotions cannot both pass);
* viewers only read (checked by ``require_role`` wherever a write happens).

Each service is keyword-only, runs in one transaction and records an audit entry in it.
"""
from __future__ import annotations

import math
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, models, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import slugify

from accounts.errors import NotFound, PermissionDenied, ValidationError
from accounts.authentication import hash_key
from accounts.models import ApiToken, AuditEntry, Invitation, Membership, Role, Workspace

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
        token_hash=hash_key(token),
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
        .filter(token_hash=hash_key(token))
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


# --- API tokens ------------------------------------------------------------------------------

MAX_TOKENS_PER_USER = 20


@transaction.atomic
def token_create(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """A new API token for ``user``; returns it with its key, which is stored hashed and so
    can be shown only now."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError("Give the token a name of 1 to 100 characters (to tell your tokens apart).", field="name")
    if ApiToken.objects.filter(user=user, name=name).exists():
        raise ValidationError(f"You already have a token named {name!r}; pick another name.", field="name")
    if ApiToken.objects.filter(user=user).count() >= MAX_TOKENS_PER_USER:
        raise ValidationError(
            f"You have {MAX_TOKENS_PER_USER} tokens, the most allowed; revoke one first.", field="name"
        )
    key = "hpo_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=key[:12], key_hash=hash_key(key))
    audit_record(actor=user, action="token.create", target=token, workspace=None, details={"name": name})
    return token, key


@transaction.atomic
def token_revoke(*, user: AbstractBaseUser, token: ApiToken) -> None:
    """Revoke one of the user's own tokens (another user's token is NotFound)."""
    if token.user_id != user.pk:
        raise NotFound("No such token of yours.")
    audit_record(actor=user, action="token.revoke", target=token, workspace=None, details={"name": token.name})
    token.delete()


# --- Workspaces: settings and deletion ----------------------------------------------------------


class _Unset:
    """Marks a keyword the caller did not pass (``None`` is a value: "no limit")."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def _validated_quotas(
    max_concurrent_trials: int | None | _Unset, gpu_hours_per_month: float | None | _Unset
) -> None:
    if not isinstance(max_concurrent_trials, _Unset) and max_concurrent_trials is not None:
        if isinstance(max_concurrent_trials, bool) or not isinstance(max_concurrent_trials, int) or max_concurrent_trials < 1:
            raise ValidationError(
                "Trials running at once must be a whole number of at least 1, or null for no limit.",
                field="max_concurrent_trials",
            )
    if not isinstance(gpu_hours_per_month, _Unset) and gpu_hours_per_month is not None:
        if (
            isinstance(gpu_hours_per_month, bool)
            or not isinstance(gpu_hours_per_month, (int, float))
            or not math.isfinite(gpu_hours_per_month)
            or gpu_hours_per_month <= 0
        ):
            raise ValidationError(
                "GPU hours per month must be a number above 0, or null for no limit.",
                field="gpu_hours_per_month",
            )


def _lock_workspace(workspace: Workspace) -> Workspace:
    locked = Workspace.objects.select_for_update().filter(pk=workspace.pk).first()
    if locked is None:
        raise NotFound("This workspace no longer exists.")
    return locked


@transaction.atomic
def workspace_update(
    *,
    actor: AbstractBaseUser,
    workspace: Workspace,
    name: str | _Unset = UNSET,
    max_concurrent_trials: int | None | _Unset = UNSET,
    gpu_hours_per_month: float | None | _Unset = UNSET,
) -> Workspace:
    """Rename a workspace or change its quotas (admins and owners). Only the keywords passed
    change; ``None`` for a quota means no limit. The workspace row is locked for the change,
    and the audit entry records each field's old and new value."""
    workspace = _lock_workspace(workspace)
    require_role(user=actor, workspace=workspace, at_least=Role.ADMIN)
    changes: dict[str, Any] = {}
    if not isinstance(name, _Unset):
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise ValidationError("A workspace name has 1 to 100 characters.", field="name")
        changes["name"] = name
    _validated_quotas(max_concurrent_trials, gpu_hours_per_month)
    if not isinstance(max_concurrent_trials, _Unset):
        changes["max_concurrent_trials"] = max_concurrent_trials
    if not isinstance(gpu_hours_per_month, _Unset):
        changes["gpu_hours_per_month"] = None if gpu_hours_per_month is None else float(gpu_hours_per_month)
    changed = {
        field: {"from": getattr(workspace, field), "to": value}
        for field, value in changes.items()
        if getattr(workspace, field) != value
    }
    if not changed:
        return workspace
    for field, change in changed.items():
        setattr(workspace, field, change["to"])
    workspace.save(update_fields=list(changed))
    audit_record(actor=actor, action="workspace.update", target=workspace, workspace=workspace, details=changed)
    return workspace


@transaction.atomic
def workspace_delete(*, actor: AbstractBaseUser, workspace: Workspace) -> None:
    """Delete a workspace with everything in it (owners only). A personal workspace is
    refused: it belongs to its user's account. The audit entry outlives the workspace (its
    ``workspace`` becomes null; the slug stays in ``details``)."""
    workspace = _lock_workspace(workspace)
    require_role(user=actor, workspace=workspace, at_least=Role.OWNER)
    if workspace.personal:
        raise ValidationError(
            f"{workspace.name!r} is a personal workspace and cannot be deleted; "
            "only workspaces made for a team can.",
            field="personal",
        )
    audit_record(
        actor=actor,
        action="workspace.delete",
        target=workspace,
        workspace=None,
        details={"slug": workspace.slug, "name": workspace.name},
    )
    workspace.delete()


@transaction.atomic
def invitation_revoke(*, actor: AbstractBaseUser, invitation: Invitation) -> None:
    """Withdraw a pending invitation (admins; an owner invitation only by an owner). An
    accepted one is history: remove the member instead."""
    invitation = Invitation.objects.select_for_update().select_related("workspace").filter(pk=invitation.pk).first()
    if invitation is None:
        raise NotFound("This invitation no longer exists.")
    _require_can_manage(actor=actor, workspace=invitation.workspace, role=Role(invitation.role))
    if invitation.accepted_at is not None:
        raise ValidationError(
            "This invitation was already accepted; remove the member instead.", field="invitation"
        )
    audit_record(
        actor=actor,
        action="membership.revoke_invitation",
        target=invitation,
        workspace=invitation.workspace,
        details={"email": invitation.email, "role": invitation.role},
    )
    invitation.delete()


# --- Login and lockout --------------------------------------------------------------------------


class LoginLockedOut(PermissionDenied):
    """Too many failed logins for one user name: refused until ``until`` (the API answers 429)."""

    def __init__(self, message: str, *, until: datetime) -> None:
        super().__init__(message)
        self.until = until


def _failures_key(username: str) -> str:
    return f"login-failures:{username.strip().lower()}"


def _locked_key(username: str) -> str:
    return f"login-locked:{username.strip().lower()}"


def _locked_message(username: str, until: datetime) -> str:
    return (
        f"Too many failed logins for {username!r}: logins for this name are refused until "
        f"{until.isoformat(timespec='seconds')}."
    )


def login_authenticate(*, request: HttpRequest | None, username: str, password: str) -> Any:
    """The active user with these credentials, or an error: ``LoginLockedOut`` while the
    name is locked (even with the right password), else ``ValidationError``.

    Failures are counted per lowercased user name in the Django cache (shared through Redis
    when there is one), so a lockout holds across processes; ``HPO_LOGIN_LOCKOUT_FAILURES``
    of them within ``HPO_LOGIN_LOCKOUT_SECONDS`` lock the name for that long. A success
    clears the count. Not atomic across processes: two racing failures may both count,
    never neither."""
    locked_until = cache.get(_locked_key(username))
    if locked_until is not None and locked_until > timezone.now():
        raise LoginLockedOut(_locked_message(username, locked_until), until=locked_until)
    user = authenticate(request, username=username, password=password)
    if user is not None:
        cache.delete(_failures_key(username))
        return user
    until = _login_record_failure(username)
    message = "Wrong user name or password."
    if until is not None:
        message += " " + _locked_message(username, until)
    raise ValidationError(message, field="non_field_errors")


def _login_record_failure(username: str) -> datetime | None:
    """Count one failure; the time the name is locked until when this one locks it."""
    seconds = settings.HPO_LOGIN_LOCKOUT_SECONDS
    key = _failures_key(username)
    cache.add(key, 0, timeout=seconds)
    try:
        failures = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=seconds)
        failures = 1
    if failures < settings.HPO_LOGIN_LOCKOUT_FAILURES:
        return None
    until = timezone.now() + timedelta(seconds=seconds)
    cache.set(_locked_key(username), until, timeout=seconds)
    cache.delete(key)
    return until


# --- Cloud credentials (RunPod) -----------------------------------------------------------------


def _cloud_credentials_model() -> Any:
    from accounts.models import CloudCredentials

    return CloudCredentials


@transaction.atomic
def cloud_credentials_set(
    *, actor: AbstractBaseUser, workspace: Workspace, api_key: str, endpoint_id: str, gpu_type: str = ""
) -> Any:
    """Set the workspace's RunPod key, endpoint and GPU type (admins and owners); replaces
    what was there. The key never reaches the audit entry, a log or an error message."""
    workspace = _lock_workspace(workspace)
    require_role(user=actor, workspace=workspace, at_least=Role.ADMIN)
    api_key, endpoint_id, gpu_type = (api_key or "").strip(), (endpoint_id or "").strip(), (gpu_type or "").strip()
    if not api_key or len(api_key) > 200 or any(c.isspace() for c in api_key):
        raise ValidationError("A RunPod API key has 1 to 200 characters and no spaces.", field="api_key")
    if not endpoint_id or len(endpoint_id) > 100 or not all(c.isalnum() or c in "-_" for c in endpoint_id):
        raise ValidationError("An endpoint id has 1 to 100 letters, digits, '-' or '_'.", field="endpoint_id")
    prices = settings.HPO_GPU_PRICES
    if gpu_type and gpu_type not in prices:
        raise ValidationError(f"Unknown GPU type {gpu_type!r}; allowed: {', '.join(sorted(prices))}.", field="gpu_type")
    model = _cloud_credentials_model()
    credentials, created = model.objects.update_or_create(
        workspace=workspace,
        defaults={"runpod_api_key": api_key, "runpod_endpoint_id": endpoint_id, "gpu_type": gpu_type, "updated_by": actor},
    )
    audit_record(
        actor=actor, action="runpod.set", target=credentials, workspace=workspace,
        details={"endpoint_id": endpoint_id, "gpu_type": gpu_type, "created": created},
    )
    return credentials


@transaction.atomic
def cloud_credentials_delete(*, actor: AbstractBaseUser, workspace: Workspace) -> None:
    """Forget the workspace's RunPod credentials (admins and owners); its runpod studies
    then train locally. Idempotent."""
    workspace = _lock_workspace(workspace)
    require_role(user=actor, workspace=workspace, at_least=Role.ADMIN)
    credentials = _cloud_credentials_model().objects.filter(workspace=workspace).first()
    if credentials is None:
        return
    audit_record(
        actor=actor, action="runpod.delete", target=credentials, workspace=workspace,
        details={"endpoint_id": credentials.runpod_endpoint_id},
    )
    credentials.delete()


def cloud_credentials_get(*, actor: AbstractBaseUser, workspace: Workspace) -> Any:
    """The workspace's credentials row or ``None`` (admins and owners only)."""
    require_role(user=actor, workspace=workspace, at_least=Role.ADMIN)
    return _cloud_credentials_model().objects.filter(workspace=workspace).first()
