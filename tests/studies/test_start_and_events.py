"""Starting and cancelling through the services: statuses, the log, the progress snapshot,
and the events that reach the study's channel-layer group (real Redis)."""
from __future__ import annotations

from typing import Any

import optuna
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import override_settings

from accounts.errors import NotFound, PermissionDenied, ValidationError
from studies.events import EVENT_VERSION, group_name, make_event, publish
from studies.models import Status, Study, StudyLogEntry
from studies.optuna_storage import DjangoStorage
from studies.progress import compute_progress
from studies.services import study_cancel, study_create, study_start, trial_cancel
from trials.models import Trial
from workers.models import TrialTicket

REDIS_LAYER = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:6379/3"]}}}


@pytest.fixture
def no_tasks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the tasks the services enqueue instead of sending them to a broker."""
    sent: list[str] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda name, *args, **kwargs: sent.append(name))
    return sent


@pytest.mark.django_db(transaction=True)
def test_start_queues_a_draft_logs_it_and_asks_for_a_tick(workspace: Any, member: Any, no_tasks: list[str]) -> None:
    study = study_create(user=member, workspace=workspace, name="s", n_trials=3)
    study = study_start(user=member, study=study)
    assert study.status == Status.QUEUED and study.queued_at
    assert no_tasks == ["workers.tasks.scheduler_tick"]
    assert StudyLogEntry.objects.get(study=study).message.startswith("Queued by mia")
    assert Study.objects.get(pk=study.pk).progress["status"] == "queued"


def test_start_is_refused_to_viewers_outsiders_and_non_drafts(
    workspace: Any, member: Any, viewer: Any, outsider: Any, no_tasks: list[str]
) -> None:
    study = study_create(user=member, workspace=workspace, name="s")
    with pytest.raises(PermissionDenied):
        study_start(user=viewer, study=study)
    with pytest.raises(NotFound):
        study_start(user=outsider, study=study)
    study_start(user=member, study=study)
    with pytest.raises(ValidationError, match="only a draft can start"):
        study_start(user=member, study=study)
    assert Study.objects.get(pk=study.pk).status == Status.QUEUED


def test_cancel_drops_queued_tickets_but_leaves_started_ones(workspace: Any, member: Any, no_tasks: list[str]) -> None:
    study = study_start(user=member, study=study_create(user=member, workspace=workspace, name="s"))
    Study.objects.filter(pk=study.pk).update(status=Status.RUNNING)
    queued = TrialTicket.objects.create(study=study)
    from django.utils import timezone

    started = TrialTicket.objects.create(study=study, started_at=timezone.now())
    study = study_cancel(user=member, study=study)
    assert study.status == Status.CANCELLING
    assert list(TrialTicket.objects.values_list("pk", flat=True)) == [started.pk]
    assert not TrialTicket.objects.filter(pk=queued.pk).exists()


def test_trial_cancel_flags_a_running_trial_only(workspace: Any, member: Any, viewer: Any) -> None:
    study = study_create(user=member, workspace=workspace, name="s")
    optuna_study = optuna.load_study(study_name=study.optuna_name, storage=DjangoStorage())
    running = Trial.objects.get(pk=optuna_study.ask()._trial_id)
    with pytest.raises(PermissionDenied):
        trial_cancel(user=viewer, trial=running)
    assert trial_cancel(user=member, trial=running).cancel_requested
    finished = optuna_study.ask()
    optuna_study.tell(finished, 0.5)
    with pytest.raises(ValidationError, match="not running"):
        trial_cancel(user=member, trial=Trial.objects.get(pk=finished._trial_id))


def test_progress_snapshot_counts_best_and_running(workspace: Any, member: Any) -> None:
    study = study_create(user=member, workspace=workspace, name="s", n_trials=5)
    optuna_study = optuna.load_study(study_name=study.optuna_name, storage=DjangoStorage())
    for value in (0.5, 0.9):
        trial = optuna_study.ask()
        optuna_study.tell(trial, value)
        Trial.objects.filter(pk=trial._trial_id).update(accuracy=value, total_score=value)
    pruned = optuna_study.ask()
    optuna_study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    running = optuna_study.ask()
    Trial.objects.filter(pk=running._trial_id).update(progress={"epoch": 2, "epochs": 10, "fraction": 0.5})
    snapshot = compute_progress(study)
    assert (snapshot["finished"], snapshot["complete"], snapshot["pruned"], snapshot["running"]) == (3, 2, 1, 1)
    assert snapshot["best_value"] == 0.9 and snapshot["best_accuracy"] == 0.9 and snapshot["best_trial"] == 1
    assert snapshot["running_trials"] == [{"number": 3, "epoch": 2, "epochs": 10, "fraction": 0.5}]
    assert snapshot["average_trial_s"] is not None and snapshot["eta_s"] is not None


def test_events_have_one_versioned_shape() -> None:
    event = make_event(7, "trial.epoch", trial=1, epoch=2)
    assert {k: event[k] for k in ("type", "version", "study_id", "trial", "epoch")} == {
        "type": "trial.epoch", "version": EVENT_VERSION, "study_id": 7, "trial": 1, "epoch": 2,
    }
    with pytest.raises(ValueError, match="unknown event type"):
        make_event(7, "trial.bogus")


@pytest.mark.django_db(transaction=True)
def test_published_events_reach_the_study_group_through_redis() -> None:
    with override_settings(CHANNEL_LAYERS=REDIS_LAYER):
        from channels.layers import channel_layers

        channel_layers.backends.clear()
        layer = get_channel_layer()
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(group_name(42), channel)
        publish(42, "trial.started", trial=0, architecture={"layers": []})
        message = async_to_sync(layer.receive)(channel)
        assert message["type"] == "study.event"
        assert message["event"]["type"] == "trial.started" and message["event"]["study_id"] == 42
        async_to_sync(layer.group_discard)(group_name(42), channel)
        channel_layers.backends.clear()
