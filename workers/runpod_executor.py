"""Trials of a ``runpod`` study, trained on the workspace's RunPod serverless endpoint.

``RunPodExecution`` is a ``TrialExecution`` whose messages come from a RunPod job instead of
a slot process: it submits the ``TrialSpec`` (``runpod_service.handler`` trains it), polls the
job's stream and hands each item to the same handling as a local trial (``Trial`` columns,
``TrialEpoch`` rows, events, the study snapshot, heartbeats), then finishes the trial once.

* Cancel: the study's or trial's stop (``should_stop``) cancels the job; a pruner's "prune"
  cancels it too and the trial ends pruned (a job cannot receive controls mid-run).
* Timeout: after ``HPO_RUNPOD_TIMEOUT`` seconds the job is cancelled and the trial fails.
* Transient errors (5xx, 408/429, connection) on submit and poll are retried
  ``HPO_RUNPOD_RETRIES`` times, waiting ``HPO_RUNPOD_BACKOFF`` x 2^n seconds.
* Fallback: with no credentials, an open breaker, a submit that still fails after the
  retries, or a job lost in the cloud (it ended without a result, or its stream could not
  be read), the trial trains on this worker's local slot (taken only then), with
  ``Trial.executor = "local-fallback"`` and the reason in the study's log.
* Circuit breaker per endpoint (in the Django cache, so shared by the workers when the cache
  is Redis): ``HPO_RUNPOD_BREAKER_FAILURES`` failures in a row open it for
  ``HPO_RUNPOD_BREAKER_SECONDS``; while open, trials go local at once.
* Cost: ``Trial.gpu_seconds`` is the job's execution time (RunPod's ``executionTime``, else
  the wall time from submit) x its GPUs; dollars come from ``HPO_GPU_PRICES`` and the
  workspace's ``gpu_type`` (``trials.cost.trial_cost_usd``, ``studies.cost.study_cost``).

The ``runpod`` SDK reads its base URL from a module global when an ``Endpoint`` is made; that
moment is guarded by a lock, and the API key is passed to the endpoint (never set globally),
so threads serving different workspaces cannot mix keys. The key never appears in a log, an
exception message or a trial row. One instance per trial; not shared by threads.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.cache import cache
from requests.adapters import HTTPAdapter

from studies.cost import study_cost
from studies.models import LogLevel, Study
from studies.services import study_log
from trials.cost import CLOUD_EXECUTOR, gpu_price, trial_cost_usd  # noqa: F401  (trial_cost_usd re-exported)
from trials.models import Trial
from workers.engine.devices import Slot
from workers.engine.messages import MESSAGE_TYPES, Message, MessageError, Started, TrialResult
from workers.engine.process import SlotPool
from workers.trial_execution import FinishedTrial, TrialExecution, trial_artifacts_dir

logger = logging.getLogger(__name__)

EXECUTOR = CLOUD_EXECUTOR
FALLBACK_EXECUTOR = "local-fallback"
FINAL_STATUSES = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
ARTIFACTS_TYPE = "runpod.artifacts"
CLOUD_GPUS = [0]  # a RunPod worker's GPUs, as the handler sees them (one per job)

_sdk_lock = threading.Lock()


class CloudUnavailable(Exception):
    """RunPod cannot take or follow this trial; the message says why (never the key)."""


# --- the SDK, retries and the breaker ------------------------------------------------------------


def make_endpoint(endpoint_id: str, api_key: str) -> Any:
    """A ``runpod.Endpoint`` on ``HPO_RUNPOD_URL_BASE`` with this key; our retries, not the
    SDK's (its adapter would retry a refused connection for half a minute)."""
    import runpod

    with _sdk_lock:
        saved = runpod.endpoint_url_base
        runpod.endpoint_url_base = settings.HPO_RUNPOD_URL_BASE
        try:
            endpoint = runpod.Endpoint(endpoint_id, api_key=api_key)
        finally:
            runpod.endpoint_url_base = saved
    session = endpoint.rp_client.rp_session
    for prefix in ("http://", "https://"):
        session.mount(prefix, HTTPAdapter(max_retries=0))
    return endpoint


def is_transient(error: BaseException) -> bool:
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return error.response.status_code >= 500 or error.response.status_code in (408, 429)
    return False


def describe(error: BaseException) -> str:
    """A readable reason without secrets (requests' messages hold URLs, never headers)."""
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code} from RunPod"
    if isinstance(error, RuntimeError) and "nauthorized" in str(error):
        return "RunPod refused the API key (401)"
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return f"cannot reach RunPod ({type(error).__name__})"
    return f"{type(error).__name__}: {str(error)[:300]}"


def with_retries(call: Callable[[], Any], what: str, *, sleep: Callable[[float], None] = time.sleep) -> Any:
    """``call()``, retried on transient errors with exponential backoff; ``CloudUnavailable``
    when it still fails (or fails for good)."""
    retries = settings.HPO_RUNPOD_RETRIES
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - classified below
            if not is_transient(error):
                raise CloudUnavailable(f"{what} failed: {describe(error)}") from None
            if attempt == retries:
                raise CloudUnavailable(f"{what} failed {retries + 1} times: {describe(error)}") from None
            delay = settings.HPO_RUNPOD_BACKOFF * 2**attempt
            logger.warning("RunPod %s failed (%s); retry %d of %d in %.1f s", what, describe(error), attempt + 1, retries, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def _breaker_key(endpoint_id: str) -> str:
    return f"runpod-breaker:{endpoint_id}"


def breaker_open(endpoint_id: str) -> bool:
    return bool(cache.get(_breaker_key(endpoint_id) + ":open"))


def breaker_failure(endpoint_id: str) -> bool:
    """Count a failure; True when this one opens the breaker."""
    key = _breaker_key(endpoint_id) + ":failures"
    cache.add(key, 0, timeout=settings.HPO_RUNPOD_BREAKER_SECONDS * 10)
    try:
        failures = cache.incr(key)
    except ValueError:
        cache.set(key, 1)
        failures = 1
    if failures < settings.HPO_RUNPOD_BREAKER_FAILURES:
        return False
    cache.set(_breaker_key(endpoint_id) + ":open", True, timeout=settings.HPO_RUNPOD_BREAKER_SECONDS)
    cache.delete(key)
    return True


def breaker_success(endpoint_id: str) -> None:
    cache.delete(_breaker_key(endpoint_id) + ":failures")


# --- cost ------------------------------------------------------------------------------------------


def study_budget_spent(study: Study) -> str | None:
    """Why the study may not start more trials (``HPO_STUDY_BUDGET_USD`` spent), or ``None``."""
    budget = settings.HPO_STUDY_BUDGET_USD
    if budget is None or study.executor != EXECUTOR:
        return None
    cost = study_cost(study)
    if cost["usd"] is None or cost["usd"] < budget:
        return None
    return f"The study's cloud budget is spent (${cost['usd']:.2f} of ${budget:g}); raise HPO_STUDY_BUDGET_USD to go on."


# --- one cloud trial -------------------------------------------------------------------------------


class _CloudJob:
    """The job as ``TrialExecution._handle`` sees a process: only "stop" and "prune" do
    anything (both cancel the job)."""

    def __init__(self, job: Any) -> None:
        self.job = job
        self.ended: str | None = None  # "cancelled" or "pruned" once we cancelled it

    def send_control(self, action: str) -> None:
        if action in ("stop", "prune") and self.ended is None:
            self.ended = "cancelled" if action == "stop" else "pruned"
            cancel_job(self.job)


def cancel_job(job: Any) -> None:
    try:
        with_retries(lambda: job.cancel(timeout=10), "cancel")
    except CloudUnavailable as error:
        logger.warning("RunPod job %s could not be cancelled: %s", job.job_id, error)


class RunPodExecution(TrialExecution):
    """``TrialExecution`` over a RunPod job (see the module docstring). ``local()`` returns
    this worker's ``(pool, slot)`` and is called only for a fallback."""

    def __init__(self, *, local: Callable[[], tuple[SlotPool, Slot]], **kwargs: Any) -> None:
        super().__init__(pool=None, **kwargs)  # type: ignore[arg-type]  # the pool comes with a fallback
        self.local = local
        self._artifacts: dict[str, str] = {}
        self._status_body: dict[str, Any] | None = None
        self._cloud_worker = ""

    def run(self, slot: Slot | None = None) -> FinishedTrial:  # type: ignore[override]
        return super().run(slot)  # type: ignore[arg-type]

    def _run(self, slot: Slot | None) -> FinishedTrial:
        params = self._suggest_params()
        credentials = self._credentials()
        if credentials is None:
            return self._fallback(params, "the workspace has no RunPod credentials")
        api_key, endpoint_id = credentials
        if breaker_open(endpoint_id):
            return self._fallback(params, f"the circuit breaker for endpoint {endpoint_id} is open after repeated failures")
        try:
            endpoint = make_endpoint(endpoint_id, api_key)
            spec = self._spec(params, gpus=list(CLOUD_GPUS))
            payload = {"input": {**spec.to_dict(), "artifacts_dir": ""}, "policy": {"executionTimeout": (settings.HPO_RUNPOD_TIMEOUT + 60) * 1000}}
            submitted = time.monotonic()
            job = with_retries(lambda: endpoint.run(payload), "submit")
        except CloudUnavailable as error:
            return self._cloud_failed(endpoint_id, params, str(error))
        breaker_success(endpoint_id)
        self._cloud_worker = f"runpod:{endpoint_id}/{job.job_id}"
        self._mark(executor=EXECUTOR, worker=self._cloud_worker[:200])
        self._announce(params, "runpod")
        study_log(study=self.study, trial_number=self.trial.number, message=f"Trial submitted to RunPod endpoint {endpoint_id} as job {job.job_id}.")
        try:
            result = self._follow(job, submitted)
        except CloudUnavailable as error:
            cancel_job(job)
            return self._cloud_failed(endpoint_id, params, str(error))
        except BaseException:
            cancel_job(job)  # nothing must train on after we gave up on it
            raise
        wall = time.monotonic() - submitted
        seconds = self._execution_seconds(job, wall)
        return self._finish(result, wall, gpu_seconds=seconds * len(CLOUD_GPUS))

    def _credentials(self) -> tuple[str, str] | None:
        from accounts.models import CloudCredentials

        row = (
            CloudCredentials.objects.filter(workspace_id=self.study.workspace_id)
            .values_list("runpod_api_key", "runpod_endpoint_id")
            .first()
        )
        return (row[0], row[1]) if row and row[0] and row[1] else None

    def _cloud_failed(self, endpoint_id: str, params: dict[str, Any], reason: str) -> FinishedTrial:
        if breaker_failure(endpoint_id):
            study_log(
                study=self.study, level=LogLevel.WARNING,
                message=f"RunPod endpoint {endpoint_id}: circuit breaker open for {settings.HPO_RUNPOD_BREAKER_SECONDS} s "
                f"after {settings.HPO_RUNPOD_BREAKER_FAILURES} failures in a row; trials train locally meanwhile.",
            )
        return self._fallback(params, reason)

    def _fallback(self, params: dict[str, Any], reason: str) -> FinishedTrial:
        """Train on this worker's slot instead; the trial still finishes exactly once."""
        study_log(study=self.study, level=LogLevel.WARNING, trial_number=self.trial.number, message=f"runpod→local: {reason}")
        pool, slot = self.local()
        self.pool = pool
        from workers.tasks import _worker_name

        self._mark(executor=FALLBACK_EXECUTOR, worker=_worker_name())
        return self._train_locally(params, slot)

    def _follow(self, job: Any, submitted: float) -> TrialResult:
        """Poll the job's stream until its result; handle each item as a local message."""
        trial_id = self.trial._trial_id
        control = _CloudJob(job)
        interval = self.storage.get_heartbeat_interval() or 10
        last_beat = 0.0
        deadline = submitted + settings.HPO_RUNPOD_TIMEOUT
        stream_path = f"{job.endpoint_id}/stream/{job.job_id}"
        while True:
            if time.monotonic() - last_beat >= interval:
                self.storage.record_heartbeat(trial_id)
                last_beat = time.monotonic()
            if self.should_stop():
                control.send_control("stop")
            if control.ended is not None:
                reason = "Cancelled; its RunPod job was cancelled." if control.ended == "cancelled" else "Pruned (its RunPod job was cancelled)."
                return TrialResult(trial_id=trial_id, status=control.ended, reason=reason)
            if time.monotonic() > deadline:
                cancel_job(job)
                return TrialResult(trial_id=trial_id, status="failed", reason=f"Timed out on RunPod after {settings.HPO_RUNPOD_TIMEOUT} s; the job was cancelled.")
            state = with_retries(lambda: job.rp_client.get(stream_path), "stream")
            for chunk in state.get("stream") or []:
                result = self._item(control, chunk.get("output") if isinstance(chunk, dict) else None)
                if result is not None:
                    return result
                if control.ended is not None:
                    break
            status = state.get("status")
            if status in FINAL_STATUSES and not state.get("stream") and control.ended is None:
                return self._ended_without_stream_result(job, status, state)
            time.sleep(settings.HPO_RUNPOD_POLL_SECONDS)

    def _item(self, control: _CloudJob, item: Any) -> TrialResult | None:
        """Handle one stream item; the ``TrialResult`` when it is the last."""
        if not isinstance(item, dict):
            return None
        if "error" in item and "type" not in item:
            raise CloudUnavailable(f"the RunPod worker refused the job: {str(item['error'])[:500]}")
        kind = item.get("type")
        if kind == ARTIFACTS_TYPE:
            self._save_artifacts(item)
            return None
        try:
            message: Message = MESSAGE_TYPES[kind].from_dict(item)
        except (KeyError, MessageError) as error:
            logger.warning("trial %s: unreadable RunPod stream item (%s)", self.trial.number, error)
            return None
        if isinstance(message, Started):  # the job, then what the cloud worker says of itself
            message = dataclasses.replace(message, worker=f"{self._cloud_worker} {message.worker}".strip()[:200])
        if isinstance(message, TrialResult):
            return dataclasses.replace(message, artifacts={**message.artifacts, **self._artifacts})
        self._handle(control, message)  # a "prune" or "stop" answer cancels the job
        return None

    def _save_artifacts(self, item: dict[str, Any]) -> None:
        """Files the cloud trial saved: details inline, the model inline (base64) if small."""
        folder = trial_artifacts_dir(self.study, self.trial.number)
        saved: dict[str, str] = {}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if item.get("details") is not None:
                path = folder / "details.json"
                path.write_text(json.dumps(item["details"]))
                saved["details"] = str(path)
            model = item.get("model") or {}
            if model.get("delivery") == "inline" and model.get("base64"):
                path = folder / Path(str(model.get("name") or "model.keras")).name
                path.write_bytes(base64.b64decode(model["base64"]))
                saved["model"] = str(path)
            elif model.get("note"):
                study_log(study=self.study, level=LogLevel.WARNING, trial_number=self.trial.number, message=str(model["note"]))
        except (OSError, ValueError) as error:
            logger.warning("trial %s: artifacts from RunPod not saved: %s", self.trial.number, error)
        self._artifacts = saved

    def _ended_without_stream_result(self, job: Any, status: str, state: dict[str, Any]) -> TrialResult:
        """The job ended and its stream is drained, yet no result came: read its output (the
        aggregated stream) once, else it was lost in the cloud."""
        body = with_retries(lambda: job.rp_client.get(f"{job.endpoint_id}/status/{job.job_id}"), "status")
        self._status_body = body
        output = body.get("output")
        for item in output if isinstance(output, list) else []:
            if isinstance(item, dict) and item.get("type") == TrialResult.TYPE:
                return self._item(_CloudJob(job), item) or TrialResult(trial_id=self.trial._trial_id, status="failed")
        if status == "TIMED_OUT":  # RunPod's own limit (ours is a minute shorter): not worth a rerun
            return TrialResult(trial_id=self.trial._trial_id, status="failed", reason="Timed out on RunPod (the job's execution timeout).")
        error = body.get("error") or state.get("error") or "no result"
        raise CloudUnavailable(f"the RunPod job ended {status} without a result ({str(error)[:300]})")

    def _execution_seconds(self, job: Any, wall: float) -> float:
        """RunPod's billed execution time when it says, else the wall time from submit."""
        body = self._status_body
        if body is None:
            try:
                body = job.rp_client.get(f"{job.endpoint_id}/status/{job.job_id}")
            except Exception as error:  # noqa: BLE001 - cost falls back to the wall time
                logger.info("trial %s: RunPod status unreadable for its cost (%s)", self.trial.number, describe(error))
                body = {}
        ms = body.get("executionTime") if isinstance(body, dict) else None
        return float(ms) / 1000 if isinstance(ms, (int, float)) and ms > 0 else wall

    def _write_result(self, result: TrialResult, gpu_seconds: float, user_attrs_json: str) -> None:
        attrs = json.loads(user_attrs_json)
        executor = Trial.objects.filter(pk=self.trial._trial_id).values_list("executor", flat=True).first()
        if executor == EXECUTOR:
            price = gpu_price(self.study.workspace_id)
            if price is not None:
                attrs["cost_usd"] = round(gpu_seconds / 3600 * price[1], 4)
                attrs["gpu_type"] = price[0]
        super()._write_result(result, gpu_seconds, json.dumps(attrs))
