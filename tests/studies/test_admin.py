"""The Django admin: every model is registered and its pages load; the cancel action goes
through the service; trials are read-only."""
from __future__ import annotations

from typing import Any

import optuna
import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from studies.models import Status, Study
from studies.optuna_storage import DjangoStorage
from studies.services import study_create
from tests.conftest import make_user
from trials.models import Trial

PROJECT_APPS = ("accounts", "studies", "trials", "workers")


@pytest.fixture
def staff_client(db: None) -> Client:
    client = Client()
    client.force_login(make_user("root-operator", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def study_with_trials(workspace: Any, member: Any) -> Study:
    study = study_create(user=member, workspace=workspace, name="cnn-search")
    optuna.load_study(study_name=study.optuna_name, storage=DjangoStorage()).optimize(
        lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=2
    )
    return study


def test_every_project_model_is_registered() -> None:
    models = [m for app in PROJECT_APPS for m in apps.get_app_config(app).get_models()]
    unregistered = [m.__name__ for m in models if not admin.site.is_registered(m)]
    # The distribution registry is an internal detail of the Optuna storage.
    assert unregistered == ["StudyParamDistribution"]


def test_changelists_and_change_pages_load(staff_client: Client, study_with_trials: Study) -> None:
    trial = study_with_trials.trials.first()
    assert trial is not None
    for app in PROJECT_APPS:
        for model in apps.get_app_config(app).get_models():
            if not admin.site.is_registered(model):
                continue
            url = reverse(f"admin:{app}_{model._meta.model_name}_changelist")
            assert staff_client.get(url).status_code == 200, url
            assert staff_client.get(url, {"q": "cnn"}).status_code == 200, url
    page = staff_client.get(reverse("admin:trials_trial_change", args=[trial.pk]))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content  # read-only


def test_cancel_action_cancels_through_the_service(staff_client: Client, study_with_trials: Study) -> None:
    response = staff_client.post(
        reverse("admin:studies_study_changelist"),
        {"action": "cancel_studies", "_selected_action": [study_with_trials.pk]},
        follow=True,
    )
    assert response.status_code == 200
    study_with_trials.refresh_from_db()
    assert study_with_trials.status == Status.CANCELLED
    assert "root-operator" in study_with_trials.status_reason
    assert Trial.objects.filter(study=study_with_trials).count() == 2  # trials kept


def test_cancel_action_reports_studies_it_could_not_cancel(
    staff_client: Client, study_with_trials: Study
) -> None:
    Study.objects.filter(pk=study_with_trials.pk).update(status=Status.COMPLETED)
    response = staff_client.post(
        reverse("admin:studies_study_changelist"),
        {"action": "cancel_studies", "_selected_action": [study_with_trials.pk]},
        follow=True,
    )
    assert b"already completed" in response.content
    study_with_trials.refresh_from_db()
    assert study_with_trials.status == Status.COMPLETED


def test_trials_cannot_be_added_or_deleted(staff_client: Client, study_with_trials: Study) -> None:
    trial = study_with_trials.trials.first()
    assert trial is not None
    assert staff_client.get(reverse("admin:trials_trial_add")).status_code == 403
    assert staff_client.post(reverse("admin:trials_trial_delete", args=[trial.pk])).status_code == 403
    assert Trial.objects.filter(pk=trial.pk).exists()
