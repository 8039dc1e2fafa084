"""Study services: who may create and cancel, what input is refused, and that a platform
study is the Optuna study."""
from __future__ import annotations

from typing import Any

import optuna
import pytest

from accounts.errors import NotFound, PermissionDenied, ValidationError
from accounts.models import AuditEntry
from studies.models import Status, Study
from studies.optuna_storage import DjangoStorage
from studies.selectors import study_get, study_list
from studies.services import study_cancel, study_create


def test_member_creates_a_draft_study_with_kind_from_dataset(workspace: Any, member: Any) -> None:
    study = study_create(user=member, workspace=workspace, name="sentiment", dataset="imdb", n_trials=5)
    assert study.status == Status.DRAFT
    assert study.task_kind == "text"
    assert study.directions == ["maximize"]
    assert study.optuna_name == f"{workspace.slug}/sentiment"
    entry = AuditEntry.objects.get(action="study.create")
    assert (entry.actor, entry.workspace, entry.target_id) == (member, workspace, str(study.pk))


def test_viewer_cannot_create_study(workspace: Any, viewer: Any) -> None:
    with pytest.raises(PermissionDenied):
        study_create(user=viewer, workspace=workspace, name="nope")
    assert not Study.objects.exists()


def test_outsider_cannot_tell_the_workspace_exists(workspace: Any, outsider: Any) -> None:
    with pytest.raises(NotFound):
        study_create(user=outsider, workspace=workspace, name="nope")


def test_duplicate_name_in_workspace_is_refused_and_original_kept(workspace: Any, owner: Any) -> None:
    first = study_create(user=owner, workspace=workspace, name="cnn", n_trials=7)
    with pytest.raises(ValidationError) as error:
        study_create(user=owner, workspace=workspace, name="cnn", n_trials=99)
    assert error.value.field == "name"
    assert "already exists" in error.value.message
    assert list(Study.objects.values_list("pk", "n_trials")) == [(first.pk, 7)]
    assert AuditEntry.objects.filter(action="study.create").count() == 1


def test_same_name_in_another_workspace_is_fine(workspace: Any, owner: Any, outsider: Any) -> None:
    study_create(user=owner, workspace=workspace, name="cnn")
    personal = outsider.memberships.get().workspace
    study_create(user=outsider, workspace=personal, name="cnn")
    assert Study.objects.filter(name="cnn").count() == 2


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("dataset", "svhn", "digits, mnist"),
        ("n_trials", 0, "from 1 to 10000"),
        ("n_trials", "5", "whole number"),
        ("concurrency", 65, "from 1 to 64"),
        ("sample_fraction", 0.0, "above 0"),
        ("sample_fraction", 1.5, "at most 1"),
        ("mode", "fast", "simple, health"),
        ("executor", "aws", "local, runpod"),
        ("pruner", "asha", "none, median, hyperband"),
        ("directions", ["up"], "maximize or minimize"),
        ("seed", -1, "from 0"),
        ("search_space", ["lr"], "object"),
        ("name", "  ", "1 to 200 characters"),
    ],
)
def test_bad_input_names_field_and_what_is_allowed(
    workspace: Any, member: Any, field: str, value: Any, says: str
) -> None:
    kwargs = {"name": "ok", field: value}
    with pytest.raises(ValidationError) as error:
        study_create(user=member, workspace=workspace, **kwargs)
    assert error.value.field == field
    assert says in error.value.message
    assert not Study.objects.exists()


def test_platform_study_is_the_optuna_study(workspace: Any, member: Any) -> None:
    study = study_create(user=member, workspace=workspace, name="quad")
    optuna_study = optuna.load_study(study_name=study.optuna_name, storage=DjangoStorage())
    optuna_study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert study.trials.count() == 3
    assert optuna_study.direction == optuna.study.StudyDirection.MAXIMIZE


def test_cancel_queued_study_ends_it_and_running_study_goes_to_cancelling(
    workspace: Any, member: Any
) -> None:
    queued = study_create(user=member, workspace=workspace, name="a")
    Study.objects.filter(pk=queued.pk).update(status=Status.QUEUED)
    running = study_create(user=member, workspace=workspace, name="b")
    Study.objects.filter(pk=running.pk).update(status=Status.RUNNING)

    assert study_cancel(user=member, study=queued).status == Status.CANCELLED
    running = study_cancel(user=member, study=running)
    assert running.status == Status.CANCELLING
    assert "mia" in running.status_reason
    assert AuditEntry.objects.filter(action="study.cancel").count() == 2


def test_cancel_twice_is_refused(workspace: Any, member: Any) -> None:
    study = study_create(user=member, workspace=workspace, name="a")
    study_cancel(user=member, study=study)
    with pytest.raises(ValidationError, match="already cancelled"):
        study_cancel(user=member, study=study)


def test_viewer_cannot_cancel(workspace: Any, member: Any, viewer: Any) -> None:
    study = study_create(user=member, workspace=workspace, name="a")
    with pytest.raises(PermissionDenied):
        study_cancel(user=viewer, study=study)
    study.refresh_from_db()
    assert study.status == Status.DRAFT


def test_selectors_hide_other_workspaces(workspace: Any, member: Any, outsider: Any) -> None:
    study = study_create(user=member, workspace=workspace, name="a")
    assert list(study_list(user=member)) == [study]
    assert list(study_list(user=outsider)) == []
    with pytest.raises(NotFound):
        study_get(user=outsider, study_id=study.pk)
    assert study_get(user=member, study_id=study.pk) == study
