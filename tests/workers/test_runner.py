"""The study runner with real slot processes running a TensorFlow-free trial
(``tests/workers/engine/fake_trial_process.py``): budget, rows, pruning, cancellation,
failures. Real training is exercised by ``test_run_study.py``."""
from __future__ import annotations

import threading
import time
from typing import Any

import optuna
import pytest

from studies.models import Status, Study
from studies.optuna_storage import DjangoStorage
from studies.services import study_create
from trials.models import Trial, TrialEpoch
from workers.engine.devices import Slot
from workers.engine.search_space import default_params
from workers.runner import StudyRunner

FAKE = "tests.workers.engine.fake_trial_process"
pytestmark = pytest.mark.django_db(transaction=True)


def make_study(workspace: Any, member: Any, **fields: Any) -> Study:
    defaults: dict[str, Any] = {"name": "fake", "n_trials": 4, "max_epochs": 3, "seed": 0}
    return study_create(user=member, workspace=workspace, **{**defaults, **fields})


def runner(study: Study, slots: int = 1, events: list[dict[str, Any]] | None = None) -> StudyRunner:
    return StudyRunner(
        study,
        slots=[Slot(i) for i in range(slots)],
        trial_module=FAKE,
        on_event=(events.append if events is not None else None),
    )


def test_study_runs_exactly_its_budget_and_stores_every_trial(workspace: Any, member: Any) -> None:
    study = make_study(workspace, member)
    events: list[dict[str, Any]] = []
    ended = runner(study, events=events).run()
    assert ended.status == Status.COMPLETED and ended.started_at and ended.finished_at
    trials = list(Trial.objects.filter(study=study).order_by("number"))
    assert [t.state for t in trials] == ["COMPLETE"] * 4
    assert {t.outcome for t in trials} == {"complete"}
    for trial in trials:
        assert trial.executor == "local" and trial.worker
        assert trial.architecture["family"] == "cnn" and trial.param_count == 42
        assert trial.value == trial.total_score == trial.accuracy
        assert trial.health_score == 0.9
        assert TrialEpoch.objects.filter(trial=trial).count() == 3
        assert trial.user_attrs["accuracy"] == trial.accuracy
    # A fresh study's first trial trains the default configuration.
    first = DjangoStorage().get_trial(trials[0].pk)
    assert first.user_attrs["default_configuration"] is True
    assert first.params == default_params("image", max_epochs=3)
    # The study's log is the same as on the cluster: one line per trial, and the end.
    from studies.models import StudyLogEntry

    lines = list(StudyLogEntry.objects.filter(study=study).values_list("trial_number", "message"))
    assert [n for n, m in lines if m.startswith("Trial complete score")] == [0, 1, 2, 3]
    assert lines[-1] == (None, "Study completed.")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "study.status" and kinds[-1] == "study.finished"
    assert kinds.count("trial.started") == kinds.count("trial.finished") == 4
    assert kinds.count("trial.epoch") == 12


def test_two_slots_run_trials_side_by_side(
    workspace: Any, member: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", "paced")  # long enough to overlap on a busy machine
    study = make_study(workspace, member, n_trials=4, concurrency=2)
    events: list[dict[str, Any]] = []
    running, most = set(), 0
    lock = threading.Lock()

    def watch(event: dict[str, Any]) -> None:
        nonlocal most
        with lock:
            events.append(event)
            if event["type"] == "trial.started":
                running.add(event["trial"])
            elif event["type"] == "trial.finished":
                running.discard(event["trial"])
            most = max(most, len(running))

    StudyRunner(study, slots=[Slot(0), Slot(1)], trial_module=FAKE, on_event=watch).run()
    assert Trial.objects.filter(study=study, state="COMPLETE").count() == 4
    assert most == 2


def test_median_pruner_prunes_the_weak_trials(workspace: Any, member: Any) -> None:
    study = make_study(workspace, member, n_trials=6, pruner="median")
    runner(study).run()
    states = dict(Trial.objects.filter(study=study).values_list("number", "state"))
    # Odd trials score a tenth of even ones (see the fake); the first two are start-up trials.
    assert [states[n] for n in (0, 2, 4)] == ["COMPLETE"] * 3
    assert states[3] == states[5] == "PRUNED"
    pruned = Trial.objects.get(study=study, number=3)
    # Epoch 1 is reported at step 1, the first step past the pruner's warm-up.
    assert TrialEpoch.objects.filter(trial=pruned).count() == 1
    assert pruned.error_message.startswith("pruned") and pruned.outcome == "pruned"


def test_cancel_stops_running_trials_quickly(
    workspace: Any, member: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", "slow")
    study = make_study(workspace, member, n_trials=3)
    progressed = threading.Event()

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "trial.progress":
            progressed.set()

    study_runner = StudyRunner(study, slots=[Slot(0)], trial_module=FAKE, on_event=on_event)
    outcome: list[Study] = []
    thread = threading.Thread(target=lambda: outcome.append(study_runner.run()))
    thread.start()
    assert progressed.wait(30)
    asked = time.monotonic()
    study_runner.cancel()
    thread.join(30)
    assert time.monotonic() - asked < 2.0  # the trial stopped within 2 seconds
    assert outcome and outcome[0].status == Status.CANCELLED
    trial = Trial.objects.get(study=study)  # no further trial started
    assert trial.state == "FAIL" and "stopped" in trial.error_message
    assert trial.outcome == "cancelled"  # not counted as a failure


def test_failing_trials_in_a_row_fail_the_study_with_the_reason(
    workspace: Any, member: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", "fail")
    settings.HPO_MAX_CONSECUTIVE_FAILURES = 3
    study = make_study(workspace, member, n_trials=10)
    ended = runner(study).run()
    assert ended.status == Status.FAILED
    assert "3 trials in a row failed" in ended.status_reason and "out of memory" in ended.status_reason
    assert Trial.objects.filter(study=study).count() == 3
    assert set(Trial.objects.filter(study=study).values_list("error_message", flat=True)) == {
        "MemoryError: out of memory"
    }


def test_a_crashed_trial_process_fails_that_trial_and_the_study_goes_on(
    workspace: Any, member: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", "crash")
    study = make_study(workspace, member, n_trials=2)
    ended = runner(study).run()
    assert ended.status == Status.COMPLETED
    messages = list(Trial.objects.filter(study=study).values_list("error_message", flat=True))
    assert len(messages) == 2 and all("ended without a result (exit code 3)" in m for m in messages)


def test_enqueued_params_are_trained_as_given(workspace: Any, member: Any) -> None:
    study = make_study(workspace, member, n_trials=1, search_space={"optimizer": {"choices": ["sgd", "adam"]}})
    optuna.load_study(study_name=study.optuna_name, storage=DjangoStorage()).enqueue_trial(
        {"filters": 64, "optimizer": "sgd"}
    )
    runner(study).run()
    trial = Trial.objects.get(study=study)
    params = DjangoStorage().get_trial(trial.pk).params
    assert params["filters"] == 64 and params["optimizer"] == "sgd"


def test_an_internal_error_fails_the_trial_and_stops_the_study(
    workspace: Any, member: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.trial_execution

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(workers.trial_execution, "suggest_params", broken)
    study = make_study(workspace, member, n_trials=3)
    ended = runner(study).run()
    assert ended.status == Status.FAILED and "the database went away" in ended.status_reason
    trial = Trial.objects.get(study=study)  # it stopped after the first
    assert trial.state == "FAIL" and "Internal error" in trial.error_message


def test_pruner_choice() -> None:
    from workers.runner import make_pruner

    assert isinstance(make_pruner("median", max_epochs=10), optuna.pruners.MedianPruner)
    hyperband = make_pruner("hyperband", max_epochs=10)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("none", max_epochs=10), optuna.pruners.NopPruner)


def test_gpu_seconds_count_the_gpus_a_trial_held(workspace: Any, member: Any) -> None:
    cpu = make_study(workspace, member, name="cpu", n_trials=1)
    runner(cpu).run()
    assert Trial.objects.get(study=cpu).gpu_seconds == 0.0
    gpu = make_study(workspace, member, name="gpu", n_trials=1)
    StudyRunner(gpu, slots=[Slot(0, (2, 3))], trial_module=FAKE).run()  # the fake ignores GPUs
    trial = Trial.objects.get(study=gpu)
    # Two GPUs held while it trained, which is within the trial's life.
    assert 0 < trial.gpu_seconds <= 2 * (trial.datetime_complete - trial.datetime_start).total_seconds()
