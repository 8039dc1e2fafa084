"""DjangoStorage beyond Optuna's contract: real studies, heartbeats, the platform rows,
pickling, and many processes sharing one study."""
from __future__ import annotations

import multiprocessing
import pickle
from datetime import timedelta
from typing import Any

import optuna
import pytest
from django.db import connection, connections
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from studies.models import Study
from studies.optuna_storage import DjangoStorage
from trials.models import Trial

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Heartbeats are driven by hand here; Study.optimize would start its own heartbeat thread.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    layers = trial.suggest_int("layers", 1, 4)
    optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
    trial.report(x * x, step=0)
    return (x - 2) ** 2 + layers + (0.5 if optimizer == "sgd" else 0.0)


@pytest.mark.django_db
def test_create_and_load_study_with_tpe_and_pruner() -> None:
    storage = DjangoStorage()
    study = optuna.create_study(
        storage=storage,
        study_name="quadratic",
        sampler=optuna.samplers.TPESampler(seed=1, n_startup_trials=5),
        pruner=optuna.pruners.MedianPruner(),
    )
    study.optimize(_objective, n_trials=25)

    loaded = optuna.load_study(study_name="quadratic", storage=DjangoStorage())
    assert len(loaded.trials) == 25
    assert loaded.best_value == pytest.approx(study.best_value)
    assert loaded.best_params == study.best_params
    # The rows the pages and the admin read are the same trials.
    rows = Trial.objects.filter(study__optuna_name="quadratic")
    assert rows.count() == 25
    best_row = rows.order_by("value").first()
    assert best_row is not None and best_row.value == pytest.approx(study.best_value)
    assert best_row.state == "COMPLETE"
    assert set(best_row.params) == {"x", "layers", "optimizer"}
    assert best_row.intermediate_values == {0: pytest.approx(best_row.params["x"] ** 2)}


@pytest.mark.django_db
def test_multi_objective_study_round_trips() -> None:
    study = optuna.create_study(storage=DjangoStorage(), directions=["maximize", "minimize"])
    study.optimize(lambda t: (t.suggest_float("a", 0, 1), t.suggest_float("b", 0, 1)), n_trials=8)
    reloaded = optuna.load_study(study_name=study.study_name, storage=DjangoStorage())
    assert reloaded.directions == [
        optuna.study.StudyDirection.MAXIMIZE,
        optuna.study.StudyDirection.MINIMIZE,
    ]
    assert len(reloaded.best_trials) >= 1
    assert Study.objects.get(optuna_name=study.study_name).directions == ["maximize", "minimize"]


@pytest.mark.django_db
def test_storage_is_picklable_and_works_after_unpickling() -> None:
    storage = DjangoStorage(heartbeat_interval=5)
    study = optuna.create_study(storage=storage)
    for _ in range(3):
        trial = study.ask()
        study.tell(trial, _objective(trial))
    clone = pickle.loads(pickle.dumps(storage))
    assert clone.get_heartbeat_interval() == 5
    assert len(clone.get_all_trials(study._study_id)) == 3


@pytest.mark.django_db
def test_cached_reads_see_trials_finished_by_another_storage_instance() -> None:
    # Two instances stand for two processes: each keeps its own cache of finished trials.
    first, second = DjangoStorage(), DjangoStorage()
    study_id = first.create_new_study([optuna.study.StudyDirection.MINIMIZE], "shared")
    running = first.create_new_trial(study_id)
    assert [t.state for t in second.get_all_trials(study_id)] == [TrialState.RUNNING]
    first.set_trial_state_values(running, TrialState.COMPLETE, [1.5])
    created_later = first.create_new_trial(study_id)
    trials = second.get_all_trials(study_id)
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.COMPLETE), (1, TrialState.RUNNING)]
    assert trials[0].value == 1.5
    assert trials[1]._trial_id == created_later


@pytest.mark.django_db
def test_param_batch_writes_a_trials_params_in_one_transaction() -> None:
    storage = DjangoStorage()
    study = optuna.create_study(storage=storage, study_name="batched")
    trial = study.ask()
    with CaptureQueriesContext(connection) as queries:
        with storage.param_batch(trial._trial_id):
            x = trial.suggest_float("x", -10, 10)
            layers = trial.suggest_int("layers", 1, 4)
            optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
            assert Trial.objects.get(pk=trial._trial_id).params == {}  # not written yet
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(writes) == 1
    assert DjangoStorage().get_trial(trial._trial_id).params == {"x": x, "layers": layers, "optimizer": optimizer}
    assert storage.get_trial(trial._trial_id).distributions["layers"] == optuna.distributions.IntDistribution(1, 4)
    study.tell(trial, 1.0)
    # Other instances (processes) see the study's distributions and keep them consistent.
    second = optuna.load_study(study_name="batched", storage=DjangoStorage())
    later = second.ask()
    with second._storage.param_batch(later._trial_id):
        with pytest.raises(ValueError, match="different distribution"):  # raised at once, not at the write
            later.suggest_int("x", 0, 3)
        later.suggest_float("x", -10, 10)
    assert set(Trial.objects.get(pk=later._trial_id).params) == {"x"}


@pytest.mark.django_db
def test_param_batch_refuses_a_finished_trial_and_still_writes_when_the_block_raises() -> None:
    storage = DjangoStorage()
    study = optuna.create_study(storage=storage)
    done = study.ask()
    study.tell(done, 0.0)
    with pytest.raises(UpdateFinishedTrialError):
        with storage.param_batch(done._trial_id):
            pass
    trial = study.ask()
    with pytest.raises(RuntimeError):
        with storage.param_batch(trial._trial_id):
            trial.suggest_float("lr", 1e-4, 1e-1, log=True)
            raise RuntimeError("the objective broke")
    assert set(Trial.objects.get(pk=trial._trial_id).params) == {"lr"}


def _stale(trial_id: int, seconds: int = 120) -> None:
    Trial.objects.filter(pk=trial_id).update(heartbeat=Now() - timedelta(seconds=seconds))


@pytest.mark.django_db
def test_stale_trial_is_failed_and_retried_as_waiting() -> None:
    storage = DjangoStorage(
        heartbeat_interval=10,
        grace_period=60,
        failed_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
    )
    study = optuna.create_study(storage=storage, study_name="crashy")
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    alive = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    never_beat = study.ask()
    storage.record_heartbeat(dead._trial_id)
    storage.record_heartbeat(alive._trial_id)
    _stale(dead._trial_id)  # its worker stopped beating two minutes ago

    fail_stale_trials(study)

    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[dead.number] == TrialState.FAIL
    assert states[alive.number] == TrialState.RUNNING
    assert states[never_beat.number] == TrialState.RUNNING
    retries = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.params == {"x": dead.params["x"]}
    assert retry.system_attrs["failed_trial"] == dead.number
    # The retry is handed to the next worker that asks.
    assert study.ask().number == retry.number


@pytest.mark.django_db
def test_heartbeat_within_grace_period_keeps_trial_running() -> None:
    storage = DjangoStorage(heartbeat_interval=10, grace_period=60)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    _stale(trial._trial_id, seconds=30)
    assert storage._get_stale_trial_ids(study._study_id) == []
    _stale(trial._trial_id, seconds=61)
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]


@pytest.mark.django_db
def test_retries_stop_at_the_limit() -> None:
    storage = DjangoStorage(
        heartbeat_interval=10,
        failed_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
    )
    study = optuna.create_study(storage=storage)
    for _ in range(2):  # the original run, then its one retry
        trial = study.ask()
        storage.record_heartbeat(trial._trial_id)
        _stale(trial._trial_id)
        fail_stale_trials(study)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert trials[1].system_attrs["failed_trial"] == 0


def test_constructor_rejects_bad_heartbeat_settings() -> None:
    with pytest.raises(ValueError, match="heartbeat_interval"):
        DjangoStorage(heartbeat_interval=0)
    with pytest.raises(ValueError, match="grace_period"):
        DjangoStorage(heartbeat_interval=5, grace_period=-1)


# --- many processes --------------------------------------------------------------------------

N_PROCESSES = 8
TRIALS_PER_PROCESS = 6
N_ENQUEUED = 24


def _worker(study_name: str, results: Any) -> None:
    connections.close_all()  # never share the parent's socket
    try:
        study = optuna.load_study(study_name=study_name, storage=DjangoStorage())
        got = []
        for _ in range(TRIALS_PER_PROCESS):
            trial = study.ask()
            x = trial.suggest_float("x", 0, 100)
            study.tell(trial, x)
            got.append((trial.number, trial._trial_id))
        results.put(("ok", got))
    except Exception as error:  # reported to the parent, which fails the test
        results.put(("error", repr(error)))
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_many_processes_share_one_study_safely() -> None:
    study = optuna.create_study(storage=DjangoStorage(), study_name="parallel")
    for i in range(N_ENQUEUED):
        study.enqueue_trial({"x": float(i)})
    enqueued_ids = {t._trial_id for t in study.get_trials() if t.state == TrialState.WAITING}
    assert len(enqueued_ids) == N_ENQUEUED

    connections.close_all()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [
        context.Process(target=_worker, args=("parallel", results)) for _ in range(N_PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    errors = [detail for status, detail in outcomes if status == "error"]
    assert errors == []
    claimed = [entry for _, got in outcomes for entry in got]
    total = N_PROCESSES * TRIALS_PER_PROCESS
    assert len(claimed) == total
    # Each WAITING trial went to exactly one worker; the rest were created fresh.
    claimed_ids = [trial_id for _, trial_id in claimed]
    assert len(set(claimed_ids)) == total
    assert enqueued_ids <= set(claimed_ids)
    # Numbers are unique and dense, and every trial finished.
    trials = optuna.load_study(study_name="parallel", storage=DjangoStorage()).get_trials()
    assert sorted(t.number for t in trials) == list(range(total))
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert connection.vendor in {"postgresql", "sqlite"}


def test_storage_for_study_uses_settings_and_the_study_retry_limit(
    workspace: Any, member: Any, settings: Any
) -> None:
    from studies.optuna_storage import storage_for_study
    from studies.services import study_create

    settings.HPO_HEARTBEAT_INTERVAL, settings.HPO_HEARTBEAT_GRACE = 7, 30
    study = study_create(user=member, workspace=workspace, name="retry-once", retry_limit=1)
    storage = storage_for_study(study)
    assert (storage.get_heartbeat_interval(), storage.grace_period) == (7, 30)
    optuna_study = optuna.load_study(study_name=study.optuna_name, storage=storage)
    for _ in range(2):  # the first run dies, its one retry dies too: no third run
        trial = optuna_study.ask()
        storage.record_heartbeat(trial._trial_id)
        _stale(trial._trial_id, seconds=31)
        fail_stale_trials(optuna_study)
    assert [t.state for t in optuna_study.get_trials()] == [TrialState.FAIL, TrialState.FAIL]
