"""The RunPod serverless worker: one trial per job, trained with ``workers.engine``.

Run it in the RunPod image with ``python -m runpod_service.handler`` (the repository root on
``sys.path``). It imports ``workers.engine`` only, never Django; TensorFlow is imported by the
training function when the first job runs.

The contract (see README.md for the full shapes):

* job input: a ``TrialSpec`` as a dict (``TrialSpec.to_dict()``, at most 1 KB as compact JSON),
  plus an optional ``model_upload_url`` (a presigned HTTP PUT URL for the ``.keras`` file);
* the handler is an async generator (``return_aggregate_stream``): it yields the trial's
  messages as ``to_dict()`` dicts (``trial.started``, ``trial.progress`` at most every
  ``RUNPOD_PROGRESS_SECONDS``, ``trial.epoch``), then a ``runpod.artifacts`` item when the trial
  saved files, and last the ``trial.result``;
* a job input that is not a valid spec yields ``{"error": ...}``: RunPod marks the job FAILED.

It is an *async* generator on purpose: RunPod's worker runs handlers on one event loop, and a
blocking generator would freeze its heartbeats and its stop channel while the trial trains.
Training runs in a thread; the generator awaits its messages.

Cancellation: RunPod stops a cancelled job by cancelling its task; the generator's ``finally``
then raises the job's cancel flag, which the trial sees between batches as a "stop" control, and
waits (bounded) for the training thread to end so a slot never trains two models at once.
``cancel(job_id)`` raises the same flag directly (the emulator uses it). There is no pruner over
the cloud: a job cannot receive controls mid-run, so the worker trains with
``wait_for_pruner=False``.

Thread-safety: ``handler`` may run several jobs at once (``RUNPOD_CONCURRENCY``); each job owns
its thread, channel and temporary folder; the cancel flags are a locked set.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from workers.engine.messages import SCHEMA_VERSION, Control, Message, MessageError, Progress, TrialResult, TrialSpec

logger = logging.getLogger(__name__)

MAX_SPEC_BYTES = 1024
DEFAULT_TRIAL_FUNCTION = "workers.engine.training:run_trial"
DEFAULT_INLINE_MODEL_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_PROGRESS_SECONDS = 1.0
STOP_WAIT_SECONDS = 60.0  # how long a stopped job waits for its trial to notice
UPLOAD_TIMEOUT_SECONDS = 600
ARTIFACTS_TYPE = "runpod.artifacts"

# The TrialSpec fields a job may carry and their JSON types (bool is refused where int is meant).
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "study_id": int, "trial_id": int, "trial_number": int, "dataset": str, "params": dict,
    "seed": int, "max_epochs": int, "sample_fraction": (int, float), "validation_split": (int, float),
    "mode": str, "health_weights": dict, "dataset_options": dict, "gpus": list,
    "progress_every_batches": int, "wait_for_pruner": bool, "artifacts_dir": str, "save_model": bool,
}

_cancelled: set[str] = set()
_cancelled_lock = threading.Lock()


class JobRefused(ValueError):
    """The job cannot run: its input is not a valid spec, or the worker is misconfigured."""


def cancel(job_id: str) -> None:
    """Ask the trial of ``job_id`` to stop at its next batch (idempotent, any thread)."""
    with _cancelled_lock:
        _cancelled.add(job_id)


def is_cancelled(job_id: str) -> bool:
    with _cancelled_lock:
        return job_id in _cancelled


def _forget(job_id: str) -> None:
    with _cancelled_lock:
        _cancelled.discard(job_id)


def _env_number(name: str, default: float, *, minimum: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise JobRefused(f"{name}={raw!r} is not a number.") from None
    if value < minimum:
        raise JobRefused(f"{name}={raw!r} must be {minimum:g} or more.")
    return value


def concurrency_modifier(current_concurrency: int) -> int:
    """Jobs this worker runs at once: ``RUNPOD_CONCURRENCY`` (default 1)."""
    return int(_env_number("RUNPOD_CONCURRENCY", 1, minimum=1))


def trial_function() -> Callable[[TrialSpec, Any], Message]:
    """``RUNPOD_TRIAL_FUNCTION`` (``module:function``), by default the engine's ``run_trial``."""
    target = os.environ.get("RUNPOD_TRIAL_FUNCTION", "").strip() or DEFAULT_TRIAL_FUNCTION
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise JobRefused(f"RUNPOD_TRIAL_FUNCTION={target!r} is not of the form 'module:function'.")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise JobRefused(f"RUNPOD_TRIAL_FUNCTION={target!r} cannot be loaded: {error}") from None
    if not callable(function):
        raise JobRefused(f"RUNPOD_TRIAL_FUNCTION={target!r} is not callable.")
    return function  # type: ignore[no-any-return]


def read_input(job_input: Any) -> tuple[TrialSpec, str | None]:
    """The job's ``TrialSpec`` and ``model_upload_url``; ``JobRefused`` names what is wrong."""
    if not isinstance(job_input, dict):
        raise JobRefused(f"The job input must be a JSON object holding a trial spec, not {type(job_input).__name__}.")
    fields = dict(job_input)
    upload_url = fields.pop("model_upload_url", None)
    if upload_url is not None and not (isinstance(upload_url, str) and upload_url.startswith(("https://", "http://"))):
        raise JobRefused("model_upload_url must be an http(s) URL (a presigned PUT URL).")
    size = len(json.dumps(fields, separators=(",", ":"), allow_nan=True).encode())
    if size > MAX_SPEC_BYTES:
        raise JobRefused(
            f"The trial spec is {size} bytes, over the {MAX_SPEC_BYTES}-byte limit: data sets are "
            "loaded by name on the worker and never shipped in a job."
        )
    try:
        spec = TrialSpec.from_dict(fields)
    except MessageError as error:
        raise JobRefused(f"The job input is not a valid trial spec: {error}") from None
    for name, expected in _FIELD_TYPES.items():
        value = getattr(spec, name, None)
        if isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
            wanted = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            raise JobRefused(f"The job input is not a valid trial spec: {name} must be {wanted}, not {value!r}.")
    if not all(isinstance(gpu, int) and not isinstance(gpu, bool) for gpu in spec.gpus):
        raise JobRefused(
            f"The job input is not a valid trial spec: gpus must be a list of device ids, not {spec.gpus!r}."
        )
    return spec, upload_url


class JobChannel:
    """The trial's channel inside the worker: messages go to the job's asyncio queue, and the
    only control is "stop", once the job's cancel flag is raised. Called from the training
    thread; ``finish`` hands over the result and tells whether anyone is still listening."""

    def __init__(self, job_id: str, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        self.job_id = job_id
        self._loop = loop
        self._queue = queue
        self._lock = threading.Lock()
        self._done = False
        self._abandoned = False

    def _deliver(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the job was abandoned, nobody listens
            pass

    def send(self, message: Message) -> None:
        self._deliver(message)

    def poll_control(self) -> Control | None:
        return Control("stop") if is_cancelled(self.job_id) else None

    def wait_control(self) -> Control:
        # Not asked in the worker (wait_for_pruner is False); a custom trial function may.
        return self.poll_control() or Control("continue")

    def finish(self, result: TrialResult) -> bool:
        """Hand over the result; False when the handler has gone (the thread cleans up)."""
        with self._lock:
            self._done = True
            if self._abandoned:
                return False
        self._deliver(_Finished(result))
        return True

    def abandon(self) -> bool:
        """The handler leaves; True when the thread is still running (it then cleans up)."""
        with self._lock:
            self._abandoned = True
            return not self._done


@dataclasses.dataclass(frozen=True)
class _Finished:
    result: TrialResult


def _failed(spec: TrialSpec, reason: str, started: float, details: str = "") -> TrialResult:
    return TrialResult(
        trial_id=spec.trial_id, status="failed", reason=reason[:2000], traceback=details[-20000:],
        seconds=time.perf_counter() - started,
    )


def _train(run: Callable[[TrialSpec, Any], Message], spec: TrialSpec, channel: JobChannel, workdir: Path) -> None:
    """The training thread: run the trial, hand over how it ended, never raise."""
    started = time.perf_counter()
    try:
        result = run(spec, channel)
        if not isinstance(result, TrialResult):
            result = _failed(spec, f"The trial function returned {type(result).__name__}, not a TrialResult.", started)
    except BaseException as error:  # noqa: BLE001 - a trial must end with a result, whatever happens
        result = _failed(spec, f"{type(error).__name__}: {error}", started, traceback.format_exc())
    if not channel.finish(result):
        shutil.rmtree(workdir, ignore_errors=True)
        _forget(channel.job_id)


async def handler(job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Train the job's trial, yielding its messages as dicts and, last, its ``TrialResult``."""
    job_id = str(job.get("id", ""))
    try:
        spec, upload_url = read_input(job.get("input"))
        run = trial_function()
        progress_seconds = _env_number("RUNPOD_PROGRESS_SECONDS", DEFAULT_PROGRESS_SECONDS, minimum=0)
        inline_max = int(_env_number("RUNPOD_INLINE_MODEL_MAX_BYTES", DEFAULT_INLINE_MODEL_MAX_BYTES, minimum=0))
    except JobRefused as error:
        logger.warning("job %s refused: %s", job_id, error)
        yield {"error": str(error)}
        return
    workdir = Path(tempfile.mkdtemp(prefix=f"trial-{spec.trial_id}-"))
    # The platform's artifacts_dir is a path on the platform; here the files go to a temporary
    # folder and come back in the stream (or through model_upload_url).
    spec = dataclasses.replace(spec, wait_for_pruner=False, artifacts_dir=str(workdir / "artifacts"))
    queue: asyncio.Queue[Any] = asyncio.Queue()
    channel = JobChannel(job_id, asyncio.get_running_loop(), queue)
    thread = threading.Thread(target=_train, args=(run, spec, channel, workdir), name=f"trial-{job_id}", daemon=True)
    started = time.perf_counter()
    logger.info("job %s: trial %s on %s started", job_id, spec.trial_id, spec.dataset)
    thread.start()
    finished = False
    try:
        last_progress = float("-inf")
        while not isinstance(item := await queue.get(), _Finished):
            if isinstance(item, Progress):
                now = time.monotonic()
                if now - last_progress < progress_seconds:
                    continue  # the next one says more; each yield is an HTTP call on RunPod
                last_progress = now
            yield item.to_dict()
        finished = True
        result = item.result
        logger.info("job %s: trial ended %s in %.1f s", job_id, result.status, time.perf_counter() - started)
        if result.artifacts:
            yield await asyncio.to_thread(_artifacts_item, result, upload_url, inline_max)
        yield dataclasses.replace(result, artifacts={}).to_dict()
    finally:
        try:
            if not finished:  # RunPod cancelled the job (or its consumer left): stop the trial
                cancel(job_id)
                logger.info("job %s: stopped, waiting for the trial to notice", job_id)
                await asyncio.to_thread(thread.join, STOP_WAIT_SECONDS)
        finally:
            if not channel.abandon():  # the thread is done: the folder and flag are ours to clear
                shutil.rmtree(workdir, ignore_errors=True)
                _forget(job_id)


def _artifacts_item(result: TrialResult, upload_url: str | None, inline_max: int) -> dict[str, Any]:
    """What the trial saved, as a stream item: details inline, the model uploaded or inline."""
    details = None
    if "details" in result.artifacts:
        try:
            details = json.loads(Path(result.artifacts["details"]).read_text())
        except (OSError, ValueError) as error:
            logger.warning("trial %s: details.json unreadable: %s", result.trial_id, error)
    model = None
    if "model" in result.artifacts:
        model = _deliver_model(Path(result.artifacts["model"]), upload_url, inline_max)
    return {"type": ARTIFACTS_TYPE, "version": SCHEMA_VERSION, "trial_id": result.trial_id,
            "details": details, "model": model}


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def _deliver_model(path: Path, upload_url: str | None, inline_max: int) -> dict[str, Any]:
    content = path.read_bytes()
    model: dict[str, Any] = {
        "name": path.name, "size_bytes": len(content), "sha256": hashlib.sha256(content).hexdigest(),
        "delivery": "not_included", "base64": None, "upload_error": None, "note": "",
    }
    if upload_url:
        try:
            _put(upload_url, content)
        except (OSError, urllib.error.URLError) as error:  # HTTPError is a URLError
            model["upload_error"] = f"{type(error).__name__}: {error}"
        else:
            model["delivery"] = "uploaded"
            model["note"] = f"The model ({_megabytes(len(content))}) was uploaded to model_upload_url."
            return model
    prefix = "Uploading to model_upload_url failed; " if upload_url else ""
    if len(content) <= inline_max:
        model["delivery"] = "inline"
        model["base64"] = base64.b64encode(content).decode("ascii")
        model["note"] = f"{prefix}The model ({_megabytes(len(content))}) is included inline, base64-encoded."
    else:
        model["note"] = (
            f"{prefix}The model ({_megabytes(len(content))}) is larger than RUNPOD_INLINE_MODEL_MAX_BYTES "
            f"({_megabytes(inline_max)}), so it is not included; pass a model_upload_url to receive it."
        )
    return model


def _put(url: str, content: bytes) -> None:
    request = urllib.request.Request(
        url, data=content, method="PUT",
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(content))},
    )
    with urllib.request.urlopen(request, timeout=UPLOAD_TIMEOUT_SECONDS) as response:  # noqa: S310 - http(s) checked
        response.read()


def serverless_config() -> dict[str, Any]:
    """What ``runpod.serverless.start`` takes (the emulator runs the same configuration)."""
    return {"handler": handler, "concurrency_modifier": concurrency_modifier, "return_aggregate_stream": True}


if __name__ == "__main__":
    import runpod

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runpod.serverless.start(serverless_config())
