"""A ``runpod`` study's trials through ``workers.tasks.run_trial`` against the RunPod emulator
(``runpod_service.emulator``: the cloud's routes, the real handler, the fake training
function): rows and events through the cloud, cancel, retries, the fallback to the local
slot, the circuit breaker, cost and the cloud budget, and the dispatch's concurrency."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import CloudCredentials
from runpod_service.emulator import Emulator, Failures
from studies.cost import study_cost
from studies.models import Executor, Status, Study, StudyLogEntry
from studies.services import study_create
from trials.cost import trial_cost_usd
from trials.models import Trial, TrialEpoch
from workers import runpod_executor, tasks
from workers.engine.devices import Slot
from workers.engine.process import SlotPool
from workers.models import TrialTicket
from workers.runpod_executor import RunPodExecution

FAKE = "tests.workers.engine.fake_trial_process"
KEY = "rp_test_SECRET_key"
ENV = {"RUNPOD_TRIAL_FUNCTION": f"{FAKE}:run", "RUNPOD_PROGRESS_SECONDS": "0"}

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def cloud() -> Iterator[Emulator]:
    with Emulator(workers=2, api_key=KEY, env=ENV) as emulator:
        yield emulator


@pytest.fixture
def fast(settings: Any) -> Any:
    settings.HPO_RUNPOD_POLL_SECONDS = 0.05
    settings.HPO_RUNPOD_BACKOFF = 0.01
    settings.HPO_RUNPOD_RETRIES = 4
    settings.HPO_GPU_PRICES = {"A100": 3600.0}  # a dollar a GPU second: easy sums
    return settings


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    calls: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(tasks, "async_task", lambda name, *args, **kwargs: calls.append((name, args)))
    return calls


@pytest.fixture
def local_slot(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlotPool]:
    """This worker's slot, running the fake trial process (used only by fallbacks)."""
    pool = SlotPool([Slot(0)], module=FAKE)
    monkeypatch.setattr(tasks, "_pool", pool)
    monkeypatch.setattr(tasks, "_slot", Slot(0))
    yield pool
    pool.close()


@pytest.fixture
def no_local_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> Any:
        raise AssertionError("a cloud trial took the local slot")

    monkeypatch.setattr(tasks, "_worker_pool", refuse)


def credentials(workspace: Any, **fields: Any) -> CloudCredentials:
    values = {"runpod_api_key": KEY, "runpod_endpoint_id": "local", "gpu_type": "A100", **fields}
    return CloudCredentials.objects.create(workspace=workspace, **values)


def cloud_study(workspace: Any, member: Any, **fields: Any) -> Study:
    values: dict[str, Any] = {"name": "cloud", "n_trials": 3, "max_epochs": 3, "seed": 0, "executor": Executor.RUNPOD, **fields}
    study = study_create(user=member, workspace=workspace, **values)
    Study.objects.filter(pk=study.pk).update(status=Status.QUEUED, queued_at=timezone.now())
    return Study.objects.get(pk=study.pk)


def run_one(study: Study, sent: list[Any]) -> Trial:
    """Dispatch, then run the study's first unstarted ticket here, as a worker would."""
    if not TrialTicket.objects.filter(study=study, started_at__isnull=True).exists():
        tasks.scheduler_tick()
    ticket = TrialTicket.objects.filter(study=study, started_at__isnull=True).order_by("id").first()
    assert ticket is not None
    before = set(Trial.objects.filter(study=study).values_list("pk", flat=True))
    tasks.run_trial(ticket.pk)
    return Trial.objects.filter(study=study).exclude(pk__in=before).get()


def job_id_of(trial: Trial) -> str:
    assert trial.worker.startswith("runpod:local/")
    return trial.worker.split()[0].rsplit("/", 1)[1]


def log_messages(study: Study) -> list[str]:
    return list(StudyLogEntry.objects.filter(study=study).order_by("id").values_list("message", flat=True))


def test_a_cloud_trial_records_epochs_events_and_cost_without_the_local_slot(
    workspace: Any, member: Any, cloud: Emulator, fast: Any, sent: Any, no_local_slot: None,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    fast.HPO_RUNPOD_URL_BASE = cloud.url
    credentials(workspace)
    events: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(tasks, "publish", lambda study_id, kind, **data: events.append((kind, data)))
    study = cloud_study(workspace, member)
    trial = run_one(study, sent)
    assert trial.state == "COMPLETE" and trial.outcome == "complete" and trial.executor == "runpod"
    assert cloud.job(job_id_of(trial))["status"] == "COMPLETED"
    assert trial.architecture["family"] == "cnn" and trial.param_count == 42
    assert TrialEpoch.objects.filter(trial=trial).count() == 3
    kinds = [kind for kind, _ in events]
    assert kinds.count("trial.started") == 1 and kinds.count("trial.epoch") == 3 and "trial.progress" in kinds
    assert kinds.count("trial.finished") == 1 and "study.progress" in kinds
    # Cost: the job's execution time x 1 GPU, priced from the workspace's GPU type.
    assert 0 < trial.gpu_seconds < 30
    assert trial_cost_usd(trial) == pytest.approx(trial.gpu_seconds, abs=1e-3)
    assert trial.user_attrs["cost_usd"] == pytest.approx(trial.gpu_seconds, abs=1e-3) and trial.user_attrs["gpu_type"] == "A100"
    cost = study_cost(study)
    assert cost["gpu_type"] == "A100" and cost["usd"] == pytest.approx(trial.gpu_seconds, abs=1e-3)
    assert KEY not in caplog.text and KEY not in " ".join(log_messages(study))
    # The whole study through the cloud; it ends completed.
    run_one(study, sent)
    run_one(study, sent)
    study.refresh_from_db()
    assert study.status == Status.COMPLETED
    assert set(Trial.objects.filter(study=study).values_list("executor", flat=True)) == {"runpod"}


def test_cancelling_a_trial_cancels_its_runpod_job(
    workspace: Any, member: Any, cloud: Emulator, fast: Any, sent: Any, no_local_slot: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast.HPO_RUNPOD_URL_BASE = cloud.url
    credentials(workspace)
    spec = RunPodExecution._spec
    monkeypatch.setattr(RunPodExecution, "_spec", lambda self, params, gpus: spec(self, {**params, "behaviour": "slow"}, gpus=gpus))

    class StopAfterFirstProgress:  # the user cancels once the trial trains in the cloud
        def __init__(self, study_id: int, trial_id: int) -> None:
            self.trial_id = trial_id

        def __call__(self) -> bool:
            return bool(Trial.objects.filter(pk=self.trial_id).values_list("progress", flat=True).get().get("fraction"))

    monkeypatch.setattr(tasks, "_StopCheck", StopAfterFirstProgress)
    study = cloud_study(workspace, member, n_trials=1)
    trial = run_one(study, sent)
    assert trial.outcome == "cancelled" and trial.state == "FAIL" and "RunPod job was cancelled" in trial.error_message
    assert cloud.job(job_id_of(trial))["status"] == "CANCELLED"
    assert cloud.wait_idle(timeout=30)  # the worker's trial really stopped


def test_transient_5xx_on_submit_are_retried(workspace: Any, member: Any, fast: Any, sent: Any, no_local_slot: None) -> None:
    with Emulator(api_key=KEY, env=ENV, failures=Failures(first_runs=2, status=503)) as flaky:
        fast.HPO_RUNPOD_URL_BASE = flaky.url
        credentials(workspace)
        study = cloud_study(workspace, member, n_trials=1)
        trial = run_one(study, sent)
        assert trial.executor == "runpod" and trial.outcome == "complete"
        assert flaky._run_calls == 3


def test_a_persistent_failure_falls_back_to_the_local_slot_and_says_why(
    workspace: Any, member: Any, fast: Any, sent: Any, local_slot: SlotPool
) -> None:
    fast.HPO_RUNPOD_RETRIES = 2
    with Emulator(api_key=KEY, env=ENV, failures=Failures(rate=1.0, status=502)) as down:
        fast.HPO_RUNPOD_URL_BASE = down.url
        credentials(workspace)
        study = cloud_study(workspace, member, n_trials=1)
        trial = run_one(study, sent)
        assert down._run_calls == 3  # the first try and two retries
    assert trial.executor == "local-fallback" and trial.outcome == "complete" and trial.state == "COMPLETE"
    assert TrialEpoch.objects.filter(trial=trial).count() == 3
    assert "runpod→local: submit failed 3 times: HTTP 502 from RunPod" in log_messages(study)
    assert Trial.objects.filter(study=study).count() == 1  # finished once, on one executor
    assert trial_cost_usd(trial) == 0.0


def test_a_job_that_fails_in_the_cloud_falls_back(
    workspace: Any, member: Any, fast: Any, sent: Any, local_slot: SlotPool
) -> None:
    with Emulator(api_key=KEY, env=ENV, failures=Failures(job_errors=1)) as cloud_once_broken:
        fast.HPO_RUNPOD_URL_BASE = cloud_once_broken.url
        credentials(workspace)
        study = cloud_study(workspace, member, n_trials=1)
        trial = run_one(study, sent)
    assert trial.executor == "local-fallback" and trial.outcome == "complete"
    assert any(m.startswith("runpod→local: the RunPod job ended FAILED") for m in log_messages(study))


def test_the_breaker_opens_after_repeated_failures_and_trials_go_local_at_once(
    workspace: Any, member: Any, fast: Any, sent: Any, local_slot: SlotPool
) -> None:
    fast.HPO_RUNPOD_RETRIES = 0
    fast.HPO_RUNPOD_BREAKER_FAILURES = 2
    with Emulator(api_key=KEY, env=ENV, failures=Failures(rate=1.0)) as down:
        fast.HPO_RUNPOD_URL_BASE = down.url
        credentials(workspace)
        study = cloud_study(workspace, member, n_trials=3)
        run_one(study, sent)
        run_one(study, sent)
        assert down._run_calls == 2 and runpod_executor.breaker_open("local")
        third = run_one(study, sent)
        assert down._run_calls == 2  # not even tried
    assert third.executor == "local-fallback" and third.outcome == "complete"
    messages = log_messages(study)
    assert any("circuit breaker open" in m for m in messages)
    assert any(m.startswith("runpod→local: the circuit breaker for endpoint local is open") for m in messages)


def test_without_credentials_a_cloud_trial_trains_locally(workspace: Any, member: Any, fast: Any, sent: Any, local_slot: SlotPool) -> None:
    study = cloud_study(workspace, member, n_trials=1)
    trial = run_one(study, sent)
    assert trial.executor == "local-fallback" and trial.outcome == "complete"
    assert "runpod→local: the workspace has no RunPod credentials" in log_messages(study)


def test_a_wrong_key_is_not_retried_and_never_logged(
    workspace: Any, member: Any, cloud: Emulator, fast: Any, sent: Any, local_slot: SlotPool, caplog: pytest.LogCaptureFixture
) -> None:
    fast.HPO_RUNPOD_URL_BASE = cloud.url
    credentials(workspace, runpod_api_key="wrong-SECRET")
    study = cloud_study(workspace, member, n_trials=1)
    trial = run_one(study, sent)
    assert trial.executor == "local-fallback"
    assert "runpod→local: submit failed: RunPod refused the API key (401)" in log_messages(study)
    assert "wrong-SECRET" not in caplog.text and "wrong-SECRET" not in " ".join(log_messages(study))


def test_a_spent_study_budget_stops_dispatching(workspace: Any, member: Any, fast: Any, sent: Any) -> None:
    credentials(workspace)
    study = cloud_study(workspace, member, n_trials=5, concurrency=2)
    Trial.objects.create(study=study, number=0, state="COMPLETE", executor="runpod", gpu_seconds=12.0)
    fast.HPO_STUDY_BUDGET_USD = 20.0
    tasks.scheduler_tick()
    assert TrialTicket.objects.filter(study=study).count() == 2
    TrialTicket.objects.all().delete()
    fast.HPO_STUDY_BUDGET_USD = 10.0  # 12 GPU seconds at $1 a second: spent
    tasks.scheduler_tick()
    assert not TrialTicket.objects.exists()
    study.refresh_from_db()
    assert "cloud budget is spent ($12.00 of $10)" in study.status_reason


def test_the_workspace_gpu_budget_says_its_dollars(workspace: Any, member: Any, fast: Any, sent: Any) -> None:
    credentials(workspace)
    workspace.gpu_hours_per_month = 0.001
    workspace.save()
    study = cloud_study(workspace, member)
    Trial.objects.create(study=study, number=0, state="COMPLETE", executor="runpod", gpu_seconds=7.2, datetime_start=timezone.now())
    tasks.scheduler_tick()
    study.refresh_from_db()
    assert "GPU budget" in study.status_reason and "about $7.20 at the A100 price" in study.status_reason


def test_dispatch_runs_a_cloud_study_up_to_its_concurrency_capped(workspace: Any, member: Any, fast: Any, sent: Any) -> None:
    fast.HPO_RUNPOD_MAX_CONCURRENCY = 4
    cloud = cloud_study(workspace, member, name="cloud", n_trials=20, concurrency=10)
    local = cloud_study(workspace, member, name="local", n_trials=20, concurrency=5, executor=Executor.LOCAL)
    tasks.scheduler_tick()
    assert TrialTicket.objects.filter(study=cloud).count() == 4
    assert TrialTicket.objects.filter(study=local).count() == 5


def test_a_cloud_trial_past_the_timeout_is_cancelled_and_fails(
    workspace: Any, member: Any, cloud: Emulator, fast: Any, sent: Any, no_local_slot: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast.HPO_RUNPOD_URL_BASE = cloud.url
    fast.HPO_RUNPOD_TIMEOUT = 1
    credentials(workspace)
    spec = RunPodExecution._spec
    monkeypatch.setattr(RunPodExecution, "_spec", lambda self, params, gpus: spec(self, {**params, "behaviour": "slow"}, gpus=gpus))
    study = cloud_study(workspace, member, n_trials=1)
    trial = run_one(study, sent)
    assert trial.outcome == "failed" and "Timed out on RunPod after 1 s" in trial.error_message
    assert cloud.job(job_id_of(trial))["status"] in ("CANCELLED", "TIMED_OUT")
    assert cloud.wait_idle(timeout=30)
