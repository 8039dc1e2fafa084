"""Operators' view of teams. Membership changes go through the services, so the admin obeys
the same rules as everyone (at least one owner per workspace, only owners make owners)."""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts.errors import ApplicationError
from accounts.models import ApiToken, AuditEntry, CloudCredentials, Invitation, Membership, Workspace
from accounts.services import membership_add, membership_change_role, membership_remove


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ("user", "role", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "personal", "member_count", "created_at")
    list_filter = ("personal",)
    search_fields = ("name", "slug", "memberships__user__username")
    readonly_fields = ("created_at",)
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workspace]:
        return super().get_queryset(request).annotate(_members=Count("memberships"))

    @admin.display(description="members", ordering="_members")
    def member_count(self, workspace: Workspace) -> int:
        return getattr(workspace, "_members", 0)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "workspace", "role", "created_at")
    list_filter = ("role", "workspace")
    search_fields = ("user__username", "user__email", "workspace__name", "workspace__slug")
    list_select_related = ("user", "workspace")
    autocomplete_fields = ("user", "workspace")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("user", "workspace") if obj is not None else ()

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, through membership_remove
        return actions

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        if change:
            original = Membership.objects.get(pk=obj.pk)
            membership_change_role(actor=request.user, membership=original, role=obj.role)  # type: ignore[arg-type]
        else:
            created = membership_add(
                actor=request.user, workspace=obj.workspace, user=obj.user, role=obj.role  # type: ignore[arg-type]
            )
            obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        membership_remove(actor=request.user, membership=obj)  # type: ignore[arg-type]

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ApplicationError as error:  # the admin's transaction was rolled back
            self.message_user(request, error.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ApplicationError as error:
            self.message_user(request, error.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("email", "workspace", "role", "invited_by", "created_at", "expires_at", "accepted_at")
    list_filter = ("role", "workspace")
    search_fields = ("email", "workspace__name")
    # Invitations are made by the services (the token is shown once and stored hashed).
    readonly_fields = (
        "workspace",
        "email",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
    )
    exclude = ("token_hash",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor_repr", "action", "target_type", "target_repr", "workspace")
    list_filter = ("action", "target_type", "workspace")
    search_fields = ("actor_repr", "action", "target_repr", "target_id")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Operators see and may delete (revoke) tokens; keys are never stored, so never shown."""

    list_display = ("name", "user", "prefix", "created_at", "last_used_at")
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = ("user", "name", "prefix", "created_at", "last_used_at")
    exclude = ("key_hash",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(CloudCredentials)
class CloudCredentialsAdmin(admin.ModelAdmin):
    """The key is write-only everywhere: set through the API (PUT /api/v1/workspaces/<slug>/runpod/)."""

    list_display = ("workspace", "runpod_endpoint_id", "gpu_type", "updated_at", "updated_by")
    readonly_fields = ("workspace", "runpod_endpoint_id", "gpu_type", "updated_at", "updated_by")
    exclude = ("runpod_api_key",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
