"""The real SDK client (``runpod.Endpoint``) end to end against the emulator, whose worker
processes run the real handler with the TensorFlow-free fake trial (``RUNPOD_TRIAL_FUNCTION``)."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import runpod

from runpod_service.emulator import Emulator, Failures
from workers.engine.messages import TrialResult, TrialSpec

API_KEY = "test-key"
WORKER_ENV = {
    "RUNPOD_TRIAL_FUNCTION": "tests.workers.engine.fake_trial_process:run",
    "RUNPOD_PROGRESS_SECONDS": "0",
    "FAKE_BATCH_SECONDS": "0.05",  # "paced": 3 epochs of 10 batches, 1.5 s a trial
}


def spec_input(behaviour: str = "normal", **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(study_id=1, trial_id=7, trial_number=0, dataset="digits", params={"behaviour": behaviour})
    fields.update(changes)
    return TrialSpec(**fields).to_dict()


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Emulator]]:
    """``cloud(**options)``: a started emulator the SDK points at (restored after the test)."""
    started: list[Emulator] = []

    def start(**options: Any) -> Emulator:
        emulator = Emulator(**{"workers": 1, "api_key": API_KEY, "env": WORKER_ENV, **options}).start()
        started.append(emulator)
        monkeypatch.setattr(runpod, "api_key", API_KEY)
        monkeypatch.setattr(runpod, "endpoint_url_base", emulator.url)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


def wait_status(job: runpod.endpoint.runner.Job, wanted: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while (status := job.status()) != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
    return status


def test_a_job_runs_to_completed_with_a_trial_result(cloud: Callable[..., Emulator]) -> None:
    emulator = cloud()
    job = runpod.Endpoint(emulator.endpoint).run(spec_input())
    assert job.job_id
    output = job.output(timeout=30)
    assert job.status() == "COMPLETED"
    result = TrialResult.from_dict(output[-1])  # return_aggregate_stream: the list of stream items
    assert result.status == "complete" and result.accuracy == pytest.approx(0.3)
    assert output[0]["type"] == "trial.started"
    status = job._fetch_job()
    assert status["delayTime"] >= 0 and status["executionTime"] >= 0 and status["workerId"] == "emulator-worker-0"


def test_run_sync_returns_the_output(cloud: Callable[..., Emulator]) -> None:
    output = runpod.Endpoint(cloud().endpoint).run_sync(spec_input(), timeout=30)
    assert output[-1]["type"] == "trial.result" and output[-1]["status"] == "complete"


def test_the_stream_yields_progress_and_epochs_then_the_result(cloud: Callable[..., Emulator]) -> None:
    job = runpod.Endpoint(cloud().endpoint).run(spec_input("paced"))
    kinds = [item["type"] for item in job.stream()]
    assert kinds[0] == "trial.started" and kinds[-1] == "trial.result"
    assert kinds.count("trial.progress") == 30 and kinds.count("trial.epoch") == 3
    assert kinds.index("trial.epoch") > kinds.index("trial.progress")


def test_cancel_stops_a_slow_job(cloud: Callable[..., Emulator]) -> None:
    emulator = cloud()
    job = runpod.Endpoint(emulator.endpoint).run(spec_input("slow"))
    assert wait_status(job, "IN_PROGRESS") == "IN_PROGRESS"
    assert job.cancel() == {"id": job.job_id, "status": "CANCELLED"}
    assert job.status() == "CANCELLED"
    # The slow trial would train for minutes: an idle worker means the trial really stopped.
    assert emulator.wait_idle(timeout=15)
    items_when_cancelled = emulator.job(job.job_id)["items"]
    time.sleep(0.3)
    assert emulator.job(job.job_id)["items"] == items_when_cancelled


def test_health_shows_the_workers_and_jobs(cloud: Callable[..., Emulator]) -> None:
    emulator = cloud(workers=2)
    endpoint = runpod.Endpoint(emulator.endpoint)
    assert endpoint.health()["workers"]["idle"] == 2
    job = endpoint.run(spec_input("slow"))
    wait_status(job, "IN_PROGRESS")
    health = endpoint.health()
    assert health["workers"]["running"] == 1 and health["workers"]["idle"] == 1
    assert health["jobs"]["inProgress"] == 1
    job.cancel()


def test_concurrent_jobs_overlap_on_the_workers(cloud: Callable[..., Emulator]) -> None:
    emulator = cloud(workers=2)
    endpoint = runpod.Endpoint(emulator.endpoint)
    jobs = [endpoint.run(spec_input("paced", trial_id=n)) for n in range(4)]
    records = [emulator.wait_job(job.job_id, timeout=60) for job in jobs]
    assert all(record["status"] == "COMPLETED" for record in records)
    events = sorted([(r["started"], 1) for r in records] + [(r["finished"], -1) for r in records])
    running, most = 0, 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 2, "never more jobs at once than workers, and the workers did overlap"
    assert {record["worker"] for record in records} == {0, 1}


def test_injected_5xx_answers_reach_the_client(cloud: Callable[..., Emulator]) -> None:
    endpoint = runpod.Endpoint(cloud(failures=Failures(first_runs=2, status=503)).endpoint)
    for _ in range(2):
        with pytest.raises(requests.HTTPError) as raised:
            endpoint.run(spec_input())
        assert raised.value.response.status_code == 503
    assert endpoint.run(spec_input()).output(timeout=30)[-1]["status"] == "complete"


def test_an_injected_job_error_fails_the_job(cloud: Callable[..., Emulator]) -> None:
    endpoint = runpod.Endpoint(cloud(failures=Failures(job_errors=1, rate=0.0)).endpoint)
    failed = endpoint.run(spec_input())
    assert wait_status(failed, "FAILED") == "FAILED"
    assert "injected" in failed._fetch_job()["error"]
    assert endpoint.run(spec_input()).output(timeout=30)[-1]["status"] == "complete"


@pytest.mark.parametrize(
    ("job_input", "named"),
    [
        (spec_input(params={"note": "x" * 1200}), "over the 1024-byte limit"),
        ({"type": "trial.spec", "version": 1, "study_id": 1, "dataset": "digits"}, "not a valid trial spec"),
    ],
)
def test_bad_input_fails_the_job_naming_the_problem(cloud: Callable[..., Emulator], job_input: dict[str, Any], named: str) -> None:
    job = runpod.Endpoint(cloud().endpoint).run(job_input)
    assert wait_status(job, "FAILED") == "FAILED"
    assert named in job._fetch_job()["error"]


def test_an_execution_timeout_times_the_job_out_and_stops_it(cloud: Callable[..., Emulator]) -> None:
    emulator = cloud()
    job = runpod.Endpoint(emulator.endpoint).run({"input": spec_input("slow"), "policy": {"executionTimeout": 500}})
    assert wait_status(job, "TIMED_OUT") == "TIMED_OUT"
    assert emulator.wait_idle(timeout=15)


def test_a_cold_start_delays_the_first_job_only(cloud: Callable[..., Emulator]) -> None:
    endpoint = runpod.Endpoint(cloud(cold_start=1.0).endpoint)
    first, second = endpoint.run(spec_input()), None
    first.output(timeout=30)
    second = endpoint.run(spec_input())
    second.output(timeout=30)
    assert first._fetch_job()["delayTime"] >= 1000
    assert second._fetch_job()["delayTime"] < 1000


def test_a_wrong_api_key_or_endpoint_is_refused(cloud: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = cloud()
    with pytest.raises(requests.HTTPError) as raised:
        runpod.Endpoint("other-endpoint").health()
    assert raised.value.response.status_code == 404
    monkeypatch.setattr(runpod, "api_key", "wrong")
    with pytest.raises(RuntimeError, match="401 Unauthorized"):
        runpod.Endpoint(emulator.endpoint).health()


def test_a_worker_that_dies_fails_its_job_and_is_replaced(cloud: Callable[..., Emulator]) -> None:
    emulator = cloud()
    endpoint = runpod.Endpoint(emulator.endpoint)
    crashed = endpoint.run(spec_input("crash"))  # the fake calls os._exit(3) in epoch 2
    assert wait_status(crashed, "FAILED") == "FAILED"
    assert "died (exit code 3)" in crashed._fetch_job()["error"]
    assert endpoint.run(spec_input()).output(timeout=30)[-1]["status"] == "complete"


def test_the_sdk_helper_points_runpod_at_the_emulator_and_restores_it() -> None:
    saved = runpod.api_key, runpod.endpoint_url_base
    with Emulator(env=WORKER_ENV) as emulator, emulator.sdk() as endpoint:
        assert runpod.endpoint_url_base == emulator.url
        assert endpoint.health()["workers"]["idle"] == 1
    assert (runpod.api_key, runpod.endpoint_url_base) == saved
