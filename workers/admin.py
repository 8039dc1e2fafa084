"""Operators see the tickets of run_trial tasks in flight (read-only)."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from workers.models import TrialTicket


@admin.register(TrialTicket)
class TrialTicketAdmin(admin.ModelAdmin):
    list_display = ("id", "study", "created_at", "started_at", "trial", "worker")
    list_filter = ("study__status",)
    list_select_related = ("study", "trial")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
