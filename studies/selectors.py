"""Reads on studies, always scoped by the user asking: another workspace's study is NotFound."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from accounts.errors import NotFound, ValidationError
from accounts.selectors import workspace_get, workspace_list
from studies.models import LogLevel, Status, Study, StudyLogEntry
from studies.progress import compute_progress


def study_list(*, user: AbstractBaseUser) -> QuerySet[Study]:
    return Study.objects.filter(workspace__in=workspace_list(user=user)).select_related("workspace")


def study_get(*, user: AbstractBaseUser, study_id: int) -> Study:
    study = study_list(user=user).filter(pk=study_id).first()
    if study is None:
        raise NotFound(f"No study {study_id} in a workspace you belong to.")
    return study


def study_search(
    *, user: AbstractBaseUser, workspace_slug: str | None = None, status: str | None = None
) -> QuerySet[Study]:
    """The user's studies, newest first, optionally of one workspace (``NotFound`` when the
    user is not in it) and in one status."""
    studies = study_list(user=user).select_related("created_by")
    if workspace_slug:
        studies = studies.filter(workspace=workspace_get(user=user, slug=workspace_slug))
    if status:
        if status not in Status.values:
            raise ValidationError(
                f"{status!r} is not a study status; allowed: {', '.join(Status.values)}.", field="status"
            )
        studies = studies.filter(status=status)
    return studies.order_by("-created_at", "-id")


def study_progress(*, user: AbstractBaseUser, study_id: int) -> dict[str, Any]:
    """The stored progress snapshot; computed from the trial rows when none was stored yet
    (a study that never ran). Computing does not store it: readers never write."""
    study = study_get(user=user, study_id=study_id)
    return study.progress or compute_progress(study)


def study_log_list(
    *, user: AbstractBaseUser, study_id: int, level: str | None = None, after: int | None = None
) -> QuerySet[StudyLogEntry]:
    """The study's log, oldest first; ``after`` (an entry id) gives only newer entries, for
    polling. Ordered by id, the key ``after`` compares."""
    study = study_get(user=user, study_id=study_id)
    entries = StudyLogEntry.objects.filter(study=study)
    if level:
        if level not in LogLevel.values:
            raise ValidationError(
                f"{level!r} is not a log level; allowed: {', '.join(LogLevel.values)}.", field="level"
            )
        entries = entries.filter(level=level)
    if after is not None:
        entries = entries.filter(pk__gt=after)
    return entries.order_by("id")
