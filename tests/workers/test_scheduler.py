"""The scheduler's dispatch, driven directly (tasks recorded, not run): concurrency, the
workspace quota, priority, and a lost task's ticket."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from studies.models import Status, Study
from studies.services import study_create
from workers import tasks
from workers.models import TrialTicket


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    calls: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(tasks, "async_task", lambda name, *args, **kwargs: calls.append((name, args)))
    return calls


def queued(workspace: Any, user: Any, name: str, **fields: Any) -> Study:
    study = study_create(user=user, workspace=workspace, name=name, **fields)
    Study.objects.filter(pk=study.pk).update(status=Status.QUEUED, queued_at=timezone.now())
    return Study.objects.get(pk=study.pk)


@pytest.mark.django_db(transaction=True)
def test_dispatch_fills_each_study_up_to_its_concurrency(workspace: Any, member: Any, sent: list[Any]) -> None:
    study = queued(workspace, member, "a", n_trials=10, concurrency=3)
    tasks.scheduler_tick()
    assert TrialTicket.objects.filter(study=study).count() == 3
    assert [name for name, _ in sent] == ["workers.tasks.run_trial"] * 3
    tasks.scheduler_tick()  # nothing more while three are in flight
    assert TrialTicket.objects.filter(study=study).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_study_never_gets_more_tasks_than_its_budget(workspace: Any, member: Any, sent: list[Any]) -> None:
    study = queued(workspace, member, "a", n_trials=2, concurrency=5)
    tasks.scheduler_tick()
    assert TrialTicket.objects.filter(study=study).count() == 2


@pytest.mark.django_db(transaction=True)
def test_workspace_quota_caps_trials_over_all_its_studies_higher_priority_first(
    workspace: Any, member: Any, sent: list[Any]
) -> None:
    workspace.max_concurrent_trials = 3
    workspace.save()
    low = queued(workspace, member, "low", n_trials=10, concurrency=2, priority=0)
    high = queued(workspace, member, "high", n_trials=10, concurrency=2, priority=5)
    tasks.scheduler_tick()
    assert TrialTicket.objects.filter(study=high).count() == 2
    assert TrialTicket.objects.filter(study=low).count() == 1
    assert TrialTicket.objects.filter(study__workspace=workspace).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_lost_task_ticket_is_forgotten_and_replaced(
    workspace: Any, member: Any, sent: list[Any], settings: Any
) -> None:
    study = queued(workspace, member, "a", n_trials=5, concurrency=1)
    lost = TrialTicket.objects.create(study=study)
    TrialTicket.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(seconds=settings.Q_CLUSTER["retry"] + 61))
    tasks.scheduler_tick()
    tickets = list(TrialTicket.objects.filter(study=study))
    assert len(tickets) == 1 and tickets[0].pk != lost.pk


@pytest.mark.django_db(transaction=True)
def test_a_run_trial_without_its_ticket_does_nothing(workspace: Any, member: Any, sent: list[Any]) -> None:
    study = queued(workspace, member, "a", n_trials=5)
    assert tasks._claim(12345) is None  # cancelled: the ticket was deleted
    assert not study.trials.exists()


@pytest.mark.django_db(transaction=True)
def test_a_spent_gpu_budget_stops_dispatching_with_the_reason(workspace: Any, member: Any, sent: list[Any]) -> None:
    import optuna

    from studies.optuna_storage import DjangoStorage
    from trials.models import Trial

    workspace.gpu_hours_per_month = 1.0
    workspace.save()
    study = queued(workspace, member, "a", n_trials=10, concurrency=2)
    trial = optuna.load_study(study_name=study.optuna_name, storage=DjangoStorage()).ask()
    Trial.objects.filter(pk=trial._trial_id).update(gpu_seconds=2400)  # 40 GPU minutes: 1 h not yet spent
    tasks.scheduler_tick()
    assert TrialTicket.objects.filter(study=study).count() == 2
    TrialTicket.objects.all().delete()
    Trial.objects.filter(pk=trial._trial_id).update(gpu_seconds=3700)  # now over the hour
    tasks.scheduler_tick()
    assert not TrialTicket.objects.exists()
    study.refresh_from_db()
    assert "GPU budget" in study.status_reason and "1.03 of 1 GPU hours" in study.status_reason
    assert study.log_entries.filter(message__contains="Not dispatching").count() == 1
    tasks.scheduler_tick()  # said once, not at every tick
    assert study.log_entries.filter(message__contains="Not dispatching").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_resumed_study_counts_failures_in_a_row_from_its_resume(workspace: Any, member: Any, settings: Any) -> None:
    from trials.models import Trial

    settings.HPO_MAX_CONSECUTIVE_FAILURES = 2
    study = queued(workspace, member, "flaky", n_trials=10)
    Study.objects.filter(pk=study.pk).update(status=Status.RUNNING)
    before = timezone.now() - timedelta(minutes=5)
    for number in range(2):  # the failures that stopped it before the resume
        Trial.objects.create(study=study, number=number, state="FAIL", outcome="failed", error_message="boom",
                             datetime_start=before, datetime_complete=before)
    resumed = Study.objects.get(pk=study.pk)  # queued_at (now) is after those failures
    Trial.objects.create(study=study, number=2, state="FAIL", outcome="failed", error_message="once more",
                         datetime_start=timezone.now(), datetime_complete=timezone.now())
    tasks._fail_study_after_repeated_failures(resumed)
    assert Study.objects.get(pk=study.pk).status == Status.RUNNING  # one failure since the resume

    Trial.objects.create(study=study, number=3, state="FAIL", outcome="failed", error_message="and again",
                         datetime_start=timezone.now(), datetime_complete=timezone.now())
    tasks._fail_study_after_repeated_failures(resumed)
    stopped = Study.objects.get(pk=study.pk)
    assert stopped.status == Status.CANCELLING and stopped.final_status == Status.FAILED
    assert "and again" in stopped.status_reason
