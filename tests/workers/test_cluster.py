"""Studies on real ``qcluster`` processes (django-q2, ORM broker) with a TensorFlow-free
trial process: the budget over several workers, cancellation, and a SIGKILLed cluster."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from django_q.tasks import async_task

from studies.models import Status, Study, StudyLogEntry
from studies.services import study_cancel, study_create, study_start
from tests.conftest import database_url_for_subprocess
from trials.models import Trial

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            states = list(Trial.objects.values_list("study_id", "number", "state", "outcome", "error_message"))
            log = list(StudyLogEntry.objects.values_list("message", flat=True))
            raise AssertionError(f"timed out waiting for {what}; trials {states}; log {log}")
        time.sleep(0.1)


class Cluster:
    """A ``manage.py qcluster`` in its own session, on the test database."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url_for_subprocess(),
            "HPO_VAR_DIR": str(tmp_path),
            "HPO_TRIAL_MODULE": "tests.workers.engine.fake_trial_process",
            "HPO_HEARTBEAT_INTERVAL": "1",
            "HPO_HEARTBEAT_GRACE": "3",
            "Q_WORKERS": "2",
            "Q_TIMEOUT": "120",
            "Q_RETRY": "150",
            "LOG_LEVEL": "WARNING",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=self.env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=open(self.env["HPO_VAR_DIR"] + "/qcluster.log", "ab"),
        )

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM to the cluster's main process (its graceful stop; signalling the whole
        group makes the sentinel wait for workers that are already gone), then clear up."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(**env: str) -> Cluster:
        cluster = Cluster(tmp_path, **env)
        made.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


def status_of(study: Study) -> str:
    return Study.objects.values_list("status", flat=True).get(pk=study.pk)


def test_a_study_spreads_over_the_workers_and_runs_exactly_its_budget(
    workspace: Any, member: Any, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster_factory(FAKE_BEHAVIOUR="paced")
    study = study_create(user=member, workspace=workspace, name="cluster", n_trials=6, concurrency=2, max_epochs=3, seed=0)
    study_start(user=member, study=study)
    wait_for(lambda: status_of(study) == Status.COMPLETED, 90, "the study to complete")
    trials = Trial.objects.filter(study=study)
    assert trials.count() == 6 and set(trials.values_list("state", flat=True)) == {"COMPLETE"}
    workers = {
        entry.message.rsplit(" ", 1)[-1] for entry in StudyLogEntry.objects.filter(study=study, message__startswith="Trial started on")
    }
    assert len(workers) == 2  # both worker processes took trials
    study.refresh_from_db()
    assert study.progress["finished"] == 6 and study.progress["running_trials"] == []
    assert study.progress["best_value"] == max(trials.values_list("value", flat=True))
    assert not study.tickets.exists()


def slot_processes(cluster: Cluster) -> list[psutil.Process]:
    assert cluster.process is not None
    found = []
    for child in psutil.Process(cluster.process.pid).children(recursive=True):
        try:
            if "fake_trial_process" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_each_worker_starts_its_slot_process_before_its_first_task_and_takes_it_down_on_stop(
    cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory(Q_WORKERS="2")
    deadline = time.monotonic() + 60
    while len(slot_processes(cluster)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    warm = slot_processes(cluster)
    assert len(warm) == 2  # no task has run: django-q2's post_spawn started them

    cluster.stop()
    gone, alive = psutil.wait_procs(warm, timeout=5)
    assert alive == []


def test_cancel_stops_running_trials_within_two_seconds_and_keeps_completed_ones(
    workspace: Any, member: Any, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster_factory(FAKE_BEHAVIOUR="paced", FAKE_BATCH_SECONDS="0.2")
    study = study_create(user=member, workspace=workspace, name="cancel-me", n_trials=20, concurrency=2, max_epochs=3, seed=0)
    study_start(user=member, study=study)
    wait_for(lambda: Trial.objects.filter(study=study, state="RUNNING", progress__has_key="epoch").count() == 2, 60, "two running trials")
    asked = time.monotonic()
    study_cancel(user=member, study=Study.objects.get(pk=study.pk))
    wait_for(lambda: not Trial.objects.filter(study=study, state="RUNNING").exists(), 10, "the running trials to stop")
    assert time.monotonic() - asked < 2.0
    wait_for(lambda: status_of(study) == Status.CANCELLED, 10, "the study to end cancelled")
    assert set(Trial.objects.filter(study=study, state="FAIL").values_list("outcome", flat=True)) == {"cancelled"}
    assert Trial.objects.filter(study=study).count() < 20
    assert not study.tickets.exists()


def test_a_killed_cluster_fails_and_retries_its_trial_and_a_restart_finishes_the_study(
    workspace: Any, member: Any, cluster_factory: Callable[..., Cluster]
) -> None:
    env = {"FAKE_BEHAVIOUR": "paced", "FAKE_BATCH_SECONDS": "0.1", "Q_WORKERS": "1"}
    first = cluster_factory(**env)
    study = study_create(
        user=member, workspace=workspace, name="crash", n_trials=3, concurrency=1, max_epochs=3, seed=0, retry_limit=2
    )
    study_start(user=member, study=study)
    wait_for(lambda: Trial.objects.filter(study=study, state="RUNNING", progress__has_key="epoch").exists(), 60, "a running trial")
    first.kill()  # SIGKILL: no goodbye, the trial stays RUNNING with a stale heartbeat
    killed = Trial.objects.get(study=study, state="RUNNING")
    cluster_factory(**env)  # a restart
    deadline = time.monotonic() + 120
    while status_of(study) != Status.COMPLETED:  # stands in for the minutely schedule
        assert time.monotonic() < deadline, "the restarted cluster did not finish the study"
        async_task("workers.tasks.scheduler_tick")
        time.sleep(2)
    killed.refresh_from_db()
    assert killed.state == "FAIL" and "heartbeats" in killed.error_message
    trials = Trial.objects.filter(study=study)
    assert trials.filter(state="COMPLETE").count() == 3  # exactly the budget finished
    retry = trials.get(system_attrs_json__contains='"failed_trial"')
    assert retry.state == "COMPLETE" and retry.system_attrs["failed_trial"] == killed.number


def test_run_study_queue_submits_to_the_cluster_and_follows_it(
    workspace: Any, owner: Any, cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    import json

    cluster = cluster_factory(FAKE_BEHAVIOUR="paced")
    done = subprocess.run(
        [sys.executable, "manage.py", "run_study", "--queue", "--workspace", workspace.slug, "--trials", "3",
         "--max-epochs", "3", "--concurrency", "2", "--json", "--progress-every", "0.2"],
        cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["n_complete"] == 3
    assert "queued for the cluster" in done.stderr and "trials 3/3" in done.stderr


def test_failing_trials_are_logged_and_a_failure_streak_fails_the_study(
    workspace: Any, member: Any, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster_factory(FAKE_BEHAVIOUR="fail", HPO_MAX_CONSECUTIVE_FAILURES="3", Q_WORKERS="1")
    study = study_create(user=member, workspace=workspace, name="doomed", n_trials=10, max_epochs=3, seed=0)
    study_start(user=member, study=study)
    wait_for(lambda: status_of(study) == Status.FAILED, 60, "the study to fail")
    study.refresh_from_db()
    assert "3 trials in a row failed" in study.status_reason and "out of memory" in study.status_reason
    assert Trial.objects.filter(study=study).count() == 3
    errors = StudyLogEntry.objects.filter(study=study, level="error", trial_number__isnull=False)
    assert errors.count() == 3 and errors.first().details == "Traceback ..."
