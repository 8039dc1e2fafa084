"""Bookkeeping of the cluster: one ticket per ``run_trial`` task in flight."""
from __future__ import annotations

from django.db import models


class TrialTicket(models.Model):
    """A ``run_trial`` task enqueued for a study. Counting tickets counts trials in flight
    whatever the broker; deleting an unstarted ticket turns its task into a no-op (this is
    how cancellation drops queued work). ``run_trial`` deletes its ticket when it ends; the
    scheduler deletes tickets whose task died or was lost."""

    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="tickets")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    trial = models.ForeignKey("trials.Trial", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [models.Index(fields=["study", "started_at"])]

    def __str__(self) -> str:
        return f"ticket {self.pk} of study {self.study_id}"
