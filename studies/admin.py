"""Operators' view of studies: search, filters, and a cancel action through the service."""
from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from accounts.errors import ApplicationError
from studies.models import DatasetUpload, Study, StudyLogEntry
from studies.services import study_cancel


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "workspace",
        "dataset",
        "mode",
        "status",
        "trial_count",
        "n_trials",
        "executor",
        "priority",
        "created_by",
        "created_at",
    )
    list_filter = ("status", "mode", "executor", "pruner", "task_kind", "dataset", "workspace")
    search_fields = ("name", "optuna_name", "workspace__name", "workspace__slug", "created_by__username")
    date_hierarchy = "created_at"
    list_select_related = ("workspace", "created_by")
    actions = ["cancel_studies"]
    # Operational knobs stay editable; the rest is what the study was created with, and
    # studies are created through the portal, the API or run_study (services validate).
    readonly_fields = (
        "workspace",
        "name",
        "optuna_name",
        "dataset",
        "task_kind",
        "mode",
        "directions",
        "search_space",
        "max_epochs",
        "sample_fraction",
        "seed",
        "executor",
        "pruner",
        "status",
        "status_reason",
        "created_by",
        "created_at",
        "updated_at",
        "queued_at",
        "started_at",
        "finished_at",
        "user_attrs_json",
        "system_attrs_json",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Study]:
        return super().get_queryset(request).annotate(_trial_count=Count("trials"))

    @admin.display(description="trials", ordering="_trial_count")
    def trial_count(self, study: Study) -> int:
        return getattr(study, "_trial_count", 0)

    @admin.action(description="Cancel selected studies")
    def cancel_studies(self, request: HttpRequest, queryset: QuerySet[Study]) -> None:
        cancelled = 0
        for study in queryset:
            try:
                study_cancel(user=request.user, study=study)  # type: ignore[arg-type]
                cancelled += 1
            except ApplicationError as error:
                self.message_user(request, f"{study}: {error.message}", messages.WARNING)
        if cancelled:
            self.message_user(request, f"Cancelled {cancelled} stud{'y' if cancelled == 1 else 'ies'}.")


@admin.register(StudyLogEntry)
class StudyLogEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "study", "level", "trial_number", "message")
    list_filter = ("level", "study__workspace")
    search_fields = ("message", "study__name")
    list_select_related = ("study",)
    readonly_fields = ("study", "created_at", "level", "trial_number", "message", "details")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(DatasetUpload)
class DatasetUploadAdmin(admin.ModelAdmin):
    """Read-only: uploads are made and deleted through ``studies.uploads`` (validation, and
    no deleting one that a running study trains on)."""

    list_display = ("name", "workspace", "kind", "size_bytes", "created_by", "created_at")
    list_filter = ("kind", "workspace")
    search_fields = ("name", "original_filename", "workspace__name")
    readonly_fields = ("workspace", "name", "kind", "file", "size_bytes", "original_filename", "summary", "created_by", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
