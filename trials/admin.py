"""Trials are read-only for operators: they are written by Optuna and the workers alone."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from trials.models import Trial, TrialEpoch


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TrialEpochInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = TrialEpoch
    fields = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
    readonly_fields = fields
    extra = 0


@admin.register(Trial)
class TrialAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "number",
        "study",
        "state",
        "value",
        "accuracy",
        "health_score",
        "total_score",
        "param_count",
        "executor",
        "worker",
        "datetime_start",
        "datetime_complete",
    )
    list_filter = ("state", "executor", "study__workspace", "study__status")
    search_fields = ("study__name", "study__optuna_name", "worker", "error_message")
    list_select_related = ("study",)
    ordering = ("-datetime_start",)
    inlines = [TrialEpochInline]


@admin.register(TrialEpoch)
class TrialEpochAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("trial", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
    list_filter = ("trial__study",)
    search_fields = ("trial__study__name",)
    list_select_related = ("trial",)
