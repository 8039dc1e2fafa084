"""A study's progress snapshot, computed from its trial rows and stored on the study.

One writer per moment is not needed: the snapshot is a pure function of the rows, so any
worker may refresh it; writes are throttled to a few a second per study.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Q, Sum
from django.utils import timezone

from studies.models import Study
from trials.models import Trial, best_first

SNAPSHOT_VERSION = 1
MIN_INTERVAL = timedelta(seconds=0.3)


def compute_progress(study: Study) -> dict[str, Any]:
    """Counts, best values, average duration, ETA and the running trials' progress."""
    trials = Trial.objects.filter(study=study)
    complete = Q(state="COMPLETE")
    timed = complete & Q(datetime_start__isnull=False, datetime_complete__isnull=False)
    duration = ExpressionWrapper(F("datetime_complete") - F("datetime_start"), output_field=DurationField())
    # One pass over the study's rows for the counts, the best accuracy and the durations.
    counts = trials.aggregate(
        running=Count("id", filter=Q(state="RUNNING")),
        waiting=Count("id", filter=Q(state="WAITING")),
        complete=Count("id", filter=complete),
        pruned=Count("id", filter=Q(state="PRUNED")),
        fail=Count("id", filter=Q(state="FAIL")),
        retries=Count("id", filter=Q(system_attrs_json__contains='"failed_trial"')),
        best_accuracy=Max("accuracy", filter=complete),
        timed=Count("id", filter=timed),
        total_duration=Sum(duration, filter=timed),
    )
    retries = counts["retries"]
    finished = counts["complete"] + counts["pruned"] + counts["fail"] - retries
    best = (
        trials.filter(state="COMPLETE", value__isnull=False)
        .order_by(*best_first(study.directions))
        .values("number", "value", "accuracy", "health_score", "total_score")
        .first()
    )
    best_accuracy = counts["best_accuracy"]
    total = counts["total_duration"]
    average = total.total_seconds() / counts["timed"] if counts["timed"] and total is not None else None
    running = [
        {"number": number, **(progress or {})}
        for number, progress in trials.filter(state="RUNNING").order_by("number").values_list("number", "progress")
    ]
    remaining = max(0, study.n_trials - finished)
    eta = None
    if average is not None and remaining:
        eta = average * remaining / max(1, min(study.concurrency, max(1, len(running))))
    return {
        "version": SNAPSHOT_VERSION,
        "study_id": study.pk,
        "status": study.status,
        "n_trials": study.n_trials,
        "finished": finished,
        "running": counts["running"],
        "waiting": counts["waiting"],
        "complete": counts["complete"],
        "pruned": counts["pruned"],
        "failed": counts["fail"] - retries,
        "retried": retries,
        "best_trial": best["number"] if best else None,
        "best_value": best["value"] if best else None,
        "best_total_score": best["total_score"] if best else None,
        "best_health": best["health_score"] if best else None,
        "best_accuracy": best_accuracy,
        "mode": study.mode,
        "average_trial_s": average,
        "eta_s": eta,
        "running_trials": running,
    }


def refresh_progress(study: Study, *, force: bool = False) -> dict[str, Any] | None:
    """Recompute and store the snapshot unless one was stored in the last 0.3 s (then
    ``None``); ``force`` for status changes, which must never be dropped."""
    now = timezone.now()
    if not force:
        claimed = Study.objects.filter(pk=study.pk).exclude(progress_updated_at__gt=now - MIN_INTERVAL).update(
            progress_updated_at=now
        )
        if not claimed:  # another writer refreshed it a moment ago
            return None
    study.refresh_from_db(fields=["status", "n_trials", "concurrency", "mode"])
    snapshot = compute_progress(study)
    Study.objects.filter(pk=study.pk).update(progress=snapshot, progress_updated_at=now)
    return snapshot
