"""Reads on studies, always scoped by the user asking: another workspace's study is NotFound."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from accounts.errors import NotFound
from accounts.selectors import workspace_list
from studies.models import Study


def study_list(*, user: AbstractBaseUser) -> QuerySet[Study]:
    return Study.objects.filter(workspace__in=workspace_list(user=user)).select_related("workspace")


def study_get(*, user: AbstractBaseUser, study_id: int) -> Study:
    study = study_list(user=user).filter(pk=study_id).first()
    if study is None:
        raise NotFound(f"No study {study_id} in a workspace you belong to.")
    return study
