"""One trial, start to end, on one slot: the part of running a study that is the same
whoever schedules the trials (``StudyRunner`` on one machine; cluster tasks later).

``TrialExecution(...).run(slot)`` takes a trial already asked from Optuna, builds its
``TrialSpec``, trains it in the slot's process (``workers.engine.process``) while recording
heartbeats, ``TrialEpoch`` rows and the pruner's answers, then writes what the trial
produced and tells Optuna how it ended. The trial never stays RUNNING: whatever breaks, it
is told as FAIL before the error goes up. One instance per trial; not shared by threads.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from django.conf import settings
from django.db import transaction
from optuna.trial import TrialState

from studies.models import LogLevel, Pruner, Study
from studies.progress import refresh_progress
from studies.services import study_log
from trials.models import Trial, TrialEpoch, best_first
from workers.engine.devices import Slot
from workers.engine.messages import EpochEnd, Message, Progress, Started, TrialResult, TrialSpec
from workers.engine.process import SlotPool, SlotProcess, TrialProcessDied
from workers.engine.search_space import suggest_params

STOP_GRACE = 30.0  # seconds a cancelled trial gets to stop before its process is killed
PROGRESS_WRITE_S = 0.5  # at most two progress writes a second per trial


def trial_artifacts_dir(study: Study, number: int) -> Path:
    return Path(settings.MEDIA_ROOT) / "studies" / str(study.pk) / "trials" / str(number)


@dataclass(frozen=True)
class FinishedTrial:
    number: int
    trial_id: int
    state: TrialState
    result: TrialResult
    seconds: float


class TrialExecution:
    """Runs ``trial`` of ``study`` on a slot of ``pool``.

    ``emit(kind, **data)`` publishes events; ``should_stop()`` is polled while it trains (a
    True sends "stop"). The running trial's epoch and share of the epoch go to
    ``Trial.progress`` and the study's snapshot, a few writes a second.
    """

    def __init__(
        self,
        *,
        study: Study,
        optuna_study: optuna.Study,
        storage: Any,
        trial: optuna.Trial,
        pool: SlotPool,
        emit: Callable[..., None],
        should_stop: Callable[[], bool],
    ) -> None:
        self.study = study
        self.optuna_study = optuna_study
        self.storage = storage
        self.trial = trial
        self.pool = pool
        self.emit = emit
        self.should_stop = should_stop
        self._progress_written = 0.0

    def run(self, slot: Slot) -> FinishedTrial:
        trial = self.trial
        try:
            return self._run(slot)
        except Exception as error:
            # Whatever broke, the trial must not stay RUNNING for ever.
            Trial.objects.filter(pk=trial._trial_id).update(error_message=f"Internal error: {error}")
            self.optuna_study.tell(trial, state=TrialState.FAIL)
            raise
        finally:
            self.on_progress(None)

    def _run(self, slot: Slot) -> FinishedTrial:
        params = self._suggest_params()
        self._mark(executor="local", worker=f"{socket.gethostname()}:{os.getpid()}")
        return self._train_locally(params, slot)

    def _train_locally(self, params: dict[str, Any], slot: Slot) -> FinishedTrial:
        """Train on ``slot`` of ``self.pool`` and finish (also a cloud trial's fallback)."""
        spec = self._spec(params, gpus=list(slot.gpus))
        self._announce(params, slot.label)
        started = time.perf_counter()
        result = self._train(spec, slot)
        seconds = time.perf_counter() - started
        return self._finish(result, seconds, gpu_seconds=seconds * len(slot.gpus))

    def _suggest_params(self) -> dict[str, Any]:
        study, trial = self.study, self.trial
        batch = getattr(self.storage, "param_batch", None)
        with batch(trial._trial_id) if batch else contextlib.nullcontext():
            return suggest_params(trial, study.task_kind, study.search_space, max_epochs=study.max_epochs)

    def _mark(self, **fields: Any) -> None:
        Trial.objects.filter(pk=self.trial._trial_id).update(**fields)

    def _spec(self, params: dict[str, Any], *, gpus: list[int]) -> TrialSpec:
        study, trial = self.study, self.trial
        return TrialSpec(
            study_id=study.pk,
            trial_id=trial._trial_id,
            trial_number=trial.number,
            dataset=study.dataset,
            params=params,
            seed=study.seed or 0,
            max_epochs=study.max_epochs,
            sample_fraction=study.sample_fraction,
            mode=study.mode,
            health_weights=study.health_weights,
            dataset_options=study.dataset_options,
            gpus=gpus,
            wait_for_pruner=study.pruner != Pruner.NONE,
            artifacts_dir=str(trial_artifacts_dir(study, trial.number)),
        )

    def _announce(self, params: dict[str, Any], where: str) -> None:
        self.on_progress({"epoch": 0, "epochs": params.get("epochs", self.study.max_epochs), "fraction": 0.0})
        self.emit("trial.queued", trial=self.trial.number, params=params, slot=where)

    def _train(self, spec: TrialSpec, slot: Slot) -> TrialResult:
        trial_id = self.trial._trial_id
        interval = self.storage.get_heartbeat_interval() or 10
        last_beat = 0.0
        stop_deadline: float | None = None
        try:
            process = self.pool.acquire(slot)
            process.start_trial(spec)
            while True:
                if time.monotonic() - last_beat >= interval:
                    self.storage.record_heartbeat(trial_id)
                    last_beat = time.monotonic()
                if stop_deadline is None and self.should_stop():
                    process.send_control("stop")
                    stop_deadline = time.monotonic() + STOP_GRACE
                elif stop_deadline is not None and time.monotonic() > stop_deadline:
                    process.kill()  # it ignored the stop; the pool starts a new one
                    return TrialResult(trial_id=trial_id, status="cancelled", reason="Killed: it did not stop when cancelled.")
                message = process.receive(timeout=0.2)
                if message is None:
                    continue
                if isinstance(message, TrialResult):
                    return message
                self._handle(process, message)
        except TrialProcessDied as error:
            return TrialResult(trial_id=trial_id, status="failed", reason=str(error))

    def _handle(self, process: SlotProcess | Any, message: Message) -> None:
        """One message of the trial's stream; ``process`` takes the pruner's ``send_control``
        (a slot process, or a cloud job that can only be stopped)."""
        trial = self.trial
        number = trial.number
        if isinstance(message, Started):
            Trial.objects.filter(pk=trial._trial_id).update(
                architecture=message.architecture, param_count=message.param_count, worker=message.worker
            )
            self.emit("trial.started", trial=number, architecture=message.architecture, param_count=message.param_count)
        elif isinstance(message, Progress):
            self.on_progress({"epoch": message.epoch, "epochs": message.epochs, "fraction": message.fraction})
            self.emit("trial.progress", trial=number, epoch=message.epoch, epochs=message.epochs, fraction=message.fraction, metrics=message.metrics)
        elif isinstance(message, EpochEnd):
            self._record_epoch(message)
            trial.report(message.score, message.epoch)
            if self.study.pruner == Pruner.NONE:
                return  # the trial did not wait; a cancel reaches it through _train
            if self.should_stop():
                action = "stop"
            else:
                action = "prune" if trial.should_prune() else "continue"
            process.send_control(action)

    def on_progress(self, progress: dict[str, Any] | None) -> None:
        """Store the trial's progress (``None``: it ended) and refresh the study snapshot;
        throttled, except for epoch ends and the end."""
        now = time.monotonic()
        routine = progress is not None and progress.get("fraction", 0) < 1
        if routine and now - self._progress_written < PROGRESS_WRITE_S:
            return
        self._progress_written = now
        Trial.objects.filter(pk=self.trial._trial_id).update(progress=progress or {})
        snapshot = refresh_progress(self.study, force=not routine)
        if snapshot is not None:
            self.emit("study.progress", progress=snapshot)

    def _record_epoch(self, message: EpochEnd) -> None:
        metrics = message.metrics
        TrialEpoch.objects.update_or_create(
            trial_id=self.trial._trial_id,
            epoch=message.epoch,
            defaults={
                "loss": metrics.get("loss"),
                "accuracy": metrics.get("accuracy"),
                "val_loss": metrics.get("val_loss"),
                "val_accuracy": metrics.get("val_accuracy"),
                "seconds": message.seconds,
            },
        )
        self.on_progress({"epoch": message.epoch, "epochs": message.epochs, "fraction": 1.0})
        self.emit("trial.epoch", trial=self.trial.number, epoch=message.epoch, epochs=message.epochs, metrics=metrics)

    def _finish(self, result: TrialResult, seconds: float, *, gpu_seconds: float) -> FinishedTrial:
        """Write what the trial produced, then tell Optuna how it ended."""
        trial = self.trial
        # The scores also go to the trial's Optuna user attrs (for anyone reading the study
        # with Optuna), in the same write as the columns: one round trip, not three.
        user_attrs = {key: getattr(result, key) for key in ("accuracy", "health_score", "total_score")}
        if result.status == "unhealthy":
            user_attrs["unhealthy"] = result.reason
        with transaction.atomic():
            current = Trial.objects.select_for_update().filter(pk=trial._trial_id).values_list("user_attrs_json", flat=True).get()
            merged = {**json.loads(current), **{k: v for k, v in user_attrs.items() if v is not None}}
            self._write_result(result, gpu_seconds, json.dumps(merged))
        if result.status in ("complete", "unhealthy") and result.total_score is not None:
            frozen = self.optuna_study.tell(trial, result.total_score)
        elif result.status == "pruned":
            frozen = self.optuna_study.tell(trial, state=TrialState.PRUNED)
        else:
            frozen = self.optuna_study.tell(trial, state=TrialState.FAIL)
        return FinishedTrial(trial.number, trial._trial_id, frozen.state, result, seconds)

    def _write_result(self, result: TrialResult, gpu_seconds: float, user_attrs_json: str) -> None:
        Trial.objects.filter(pk=self.trial._trial_id).update(
            user_attrs_json=user_attrs_json,
            gpu_seconds=gpu_seconds,
            accuracy=result.accuracy,
            health_score=result.health_score,
            total_score=result.total_score,
            health_metrics=result.health,
            param_count=result.param_count,
            outcome=result.status,
            error_message=result.reason if result.status != "complete" else "",
            artifacts=result.artifacts,
            **({"architecture": result.architecture} if result.architecture else {}),
        )


def record_finished(study: Study, finished: FinishedTrial, emit: Callable[..., None]) -> None:
    """What follows any trial's end, whoever ran it: a line in the study's log (with the
    traceback of a failure), only the best model kept, and the ``trial.finished`` event."""
    result = finished.result
    score = f" score {result.total_score:.4f}" if result.total_score is not None else ""
    study_log(
        study=study,
        level=LogLevel.ERROR if result.status == "failed" else LogLevel.INFO,
        trial_number=finished.number,
        message=f"Trial {result.status}{score}" + (f": {result.reason}" if result.reason else "."),
        details=result.traceback,
    )
    if result.artifacts.get("model"):
        keep_only_best_model(study)
    emit(
        "trial.finished",
        trial=finished.number,
        state=finished.state.name,
        status=result.status,
        accuracy=result.accuracy,
        health_score=result.health_score,
        total_score=result.total_score,
        reason=result.reason,
        seconds=finished.seconds,
    )


def keep_only_best_model(study: Study) -> None:
    """Delete the model files of every trial but the study's best (unless
    ``HPO_KEEP_ALL_MODELS``). Reads the database, so any number of workers may call it."""
    if settings.HPO_KEEP_ALL_MODELS:
        return
    best = (
        Trial.objects.filter(study=study, state=TrialState.COMPLETE.name, value__isnull=False)
        .order_by(*best_first(study.directions))
        .first()
    )
    others = Trial.objects.filter(study=study, artifacts__has_key="model")
    if best is not None:
        others = others.exclude(pk=best.pk)
    for trial in others:
        artifacts = dict(trial.artifacts)
        Path(artifacts.pop("model")).unlink(missing_ok=True)
        Trial.objects.filter(pk=trial.pk).update(artifacts=artifacts)
