"""Teams: workspaces, their members and roles, invitations, and the audit log."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self.value]

    def at_least(self, other: "Role") -> bool:
        return self.rank >= other.rank


_ROLE_RANK = {"viewer": 0, "member": 1, "admin": 2, "owner": 3}


class Workspace(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    personal = models.BooleanField(
        default=False, help_text="Made for a user when the account was created."
    )
    max_concurrent_trials = models.PositiveIntegerField(
        null=True, blank=True, help_text="Quota: trials running at once over all studies (empty: no limit)."
    )
    gpu_hours_per_month = models.FloatField(
        null=True,
        blank=True,
        help_text="Budget: GPU hours trained per calendar month (UTC) over all studies; "
        "dispatching stops when it is spent (empty: no limit).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="one_membership_per_user"),
            models.CheckConstraint(
                condition=models.Q(role__in=[r.value for r in Role]), name="membership_role_valid"
            ),
        ]
        indexes = [models.Index(fields=["user", "workspace"])]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.role})"


class Invitation(models.Model):
    """A standing offer to join a workspace, accepted with a one-time token (stored hashed)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} to {self.workspace} as {self.role}"


class AuditEntry(models.Model):
    """Who did what to which object, and when. Written in the same transaction as the change."""

    workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_repr = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["workspace", "-created_at"])]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_repr or 'system'} {self.action} {self.target_type} {self.target_repr}"


class ApiToken(models.Model):
    """A user's API token for scripts. The key is shown once, when made; only its SHA-256
    is stored. ``prefix`` (the key's first characters) lets a user tell tokens apart."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="one_token_name_per_user")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class CloudCredentials(models.Model):
    """A workspace's RunPod account: the API key its cloud trials run with, the serverless
    endpoint that runs the handler (``runpod_service``), and the GPU type for pricing.

    The key is write-only: the API answers whether it is set, never its value, and it is kept
    out of ``str()``, logs, audit details and the admin (``editable=False``). It is stored as
    given (the database is the platform's trust boundary, as for the Django secret key)."""

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="cloud_credentials")
    runpod_api_key = models.CharField(max_length=200, editable=False)
    runpod_endpoint_id = models.CharField(max_length=100)
    gpu_type = models.CharField(max_length=40, blank=True, help_text="For pricing: a key of HPO_GPU_PRICES.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name_plural = "cloud credentials"

    def __str__(self) -> str:
        return f"RunPod endpoint {self.runpod_endpoint_id} for {self.workspace}"

    def __repr__(self) -> str:
        return f"<CloudCredentials workspace={self.workspace_id} endpoint={self.runpod_endpoint_id!r}>"
