"""Run a study's trials on this machine: ask Optuna, train in a trial process, tell Optuna.

``StudyRunner(study).run()`` keeps up to ``min(study.concurrency, slots)`` trials training
at once, one fresh process per trial (``workers.engine.process``), until the study's budget
of trials is spent, it is cancelled, or too many trials in a row failed. The trial process
never touches the database: this side writes the ``Trial`` and ``TrialEpoch`` rows, asks the
pruner after every epoch, records heartbeats, and publishes progress through ``on_event``.

Thread-safe ``cancel()``: running trials get a "stop" and end within one batch; completed
trials stay; the study ends cancelled.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from django.conf import settings
from django.db import close_old_connections, connections
from optuna.trial import TrialState

from studies.models import Pruner, Status, Study
from studies.optuna_storage import storage_for_study
from studies.services import study_finish, study_mark_running
from trials.models import Trial, TrialEpoch
from workers.engine.devices import Slot, detect_gpus, plan_slots
from workers.engine.messages import EpochEnd, Progress, Started, TrialResult, TrialSpec
from workers.engine.process import TRIAL_MODULE, SlotPool, TrialProcessDied
from workers.engine.search_space import default_params, suggest_params

logger = logging.getLogger(__name__)
# The runner records heartbeats itself (Optuna's own heartbeat thread lives in optimize()).
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed", category=UserWarning)
# Multivariate TPE is marked experimental; it is the sampler we choose on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

Event = dict[str, Any]
STOP_GRACE = 30.0  # seconds a cancelled trial gets to stop before its process is killed


def make_sampler(study: Study, *, parallel: bool) -> optuna.samplers.BaseSampler:
    """Multivariate TPE, seeded by the study. A third of the budget (at most 5 trials, the
    default configuration included) samples at random before TPE takes over; with trials
    running side by side, the constant liar keeps them from sampling the same point."""
    startup = min(5, max(1, study.n_trials // 3))
    return optuna.samplers.TPESampler(
        seed=study.seed, n_startup_trials=startup, multivariate=True, constant_liar=parallel
    )


def make_pruner(name: str, *, max_epochs: int) -> optuna.pruners.BasePruner:
    if name == Pruner.MEDIAN:
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == Pruner.HYPERBAND:
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


def machine_slots() -> list[Slot]:
    return plan_slots(
        detect_gpus(), gpus_per_trial=settings.HPO_GPUS_PER_TRIAL, cpu_slots=settings.HPO_CPU_SLOTS
    )


def trial_artifacts_dir(study: Study, number: int) -> Path:
    return Path(settings.MEDIA_ROOT) / "studies" / str(study.pk) / "trials" / str(number)


class StudyRunner:
    """Runs one study to its end on this machine. Not reusable: one ``run`` per instance."""

    def __init__(
        self,
        study: Study,
        *,
        slots: list[Slot] | None = None,
        on_event: Callable[[Event], None] | None = None,
        trial_module: str = TRIAL_MODULE,
    ) -> None:
        self.study = study
        slots = slots if slots is not None else machine_slots()
        self.slots = slots[: max(1, min(study.concurrency, len(slots)))]
        self.on_event = on_event or (lambda event: None)
        self.storage = storage_for_study(study)
        self.trial_module = trial_module  # the tests run a TensorFlow-free trial process
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._started = 0
        self._consecutive_failures = 0
        self._failed_reason = ""
        self._models: dict[int, str] = {}  # trial id -> model file still on disk
        self.running: dict[int, dict[str, Any]] = {}  # trial number -> progress
        self.durations: list[float] = []

    # --- control -----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask every running trial to stop; no new trial starts. Idempotent, thread-safe."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _emit(self, kind: str, **data: Any) -> None:
        try:
            self.on_event({"type": kind, "study_id": self.study.pk, **data})
        except Exception:  # a display must never stop a study
            logger.exception("event handler failed for %s", kind)

    # --- the study ---------------------------------------------------------------------------

    def run(self) -> Study:
        """Run until the budget is spent, cancelled, or failing; return the ended study."""
        study = self.study
        self._optuna_study = optuna.load_study(
            study_name=study.optuna_name,
            storage=self.storage,
            sampler=make_sampler(study, parallel=len(self.slots) > 1),
            pruner=make_pruner(study.pruner, max_epochs=study.max_epochs),
        )
        if not Trial.objects.filter(study=study).exists():
            # A fresh study starts from the default configuration (KerasTuner does the same):
            # a known-good point for TPE to improve on, never a wasted trial.
            self._optuna_study.enqueue_trial(
                default_params(study.task_kind, study.search_space, max_epochs=study.max_epochs),
                user_attrs={"default_configuration": True},
            )
        self._started = Trial.objects.filter(study=study).exclude(state=TrialState.WAITING.name).count()
        self.study = study_mark_running(study=study)
        self._emit("study.status", status=Status.RUNNING)
        self._pool = SlotPool(self.slots, module=self.trial_module)
        self._pool.warm()
        started = time.perf_counter()
        threads = [
            threading.Thread(target=self._slot_loop, args=(slot,), name=f"trial-slot-{slot.label}")
            for slot in self.slots
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            self._pool.close()
        if self.cancelled:
            status, reason = Status.CANCELLED, "Cancelled; completed trials were kept."
        elif self._failed_reason:
            status, reason = Status.FAILED, self._failed_reason
        else:
            status, reason = Status.COMPLETED, ""
        self.study = study_finish(study=self.study, status=status, reason=reason)
        logger.info("study %s ended %s in %.1f s", study.pk, status, time.perf_counter() - started)
        self._emit("study.finished", status=status, reason=reason)
        return self.study

    def _claim(self) -> bool:
        """Take one trial of the budget, unless the study should stop."""
        with self._lock:
            if self.cancelled or self._failed_reason or self._started >= self.study.n_trials:
                return False
            self._started += 1
            return True

    def _slot_loop(self, slot: Slot) -> None:
        try:
            while self._claim():
                try:
                    self._run_trial(slot)
                except Exception as error:  # a bug or a lost database: stop, don't hang
                    logger.exception("study %s: a trial could not be run", self.study.pk)
                    with self._lock:
                        self._failed_reason = f"Internal error while running a trial: {error}"
        finally:
            connections.close_all()  # this thread's connection

    # --- one trial -------------------------------------------------------------------------------

    def _run_trial(self, slot: Slot) -> None:
        close_old_connections()
        trial = self._optuna_study.ask()
        try:
            self._run_asked_trial(trial, slot)
        except Exception as error:
            # Whatever broke, the trial must not stay RUNNING for ever.
            Trial.objects.filter(pk=trial._trial_id).update(error_message=f"Internal error: {error}")
            self._optuna_study.tell(trial, state=TrialState.FAIL)
            raise

    def _run_asked_trial(self, trial: optuna.Trial, slot: Slot) -> None:
        study = self.study
        params = suggest_params(trial, study.task_kind, study.search_space, max_epochs=study.max_epochs)
        worker = f"{socket.gethostname()}:{os.getpid()}"
        Trial.objects.filter(pk=trial._trial_id).update(executor="local", worker=worker)
        spec = TrialSpec(
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
            gpus=list(slot.gpus),
            wait_for_pruner=study.pruner != Pruner.NONE,
            artifacts_dir=str(trial_artifacts_dir(study, trial.number)),
        )
        with self._lock:
            self.running[trial.number] = {"epoch": 0, "epochs": params.get("epochs", study.max_epochs), "fraction": 0.0}
        self._emit("trial.queued", trial=trial.number, params=params, slot=slot.label)
        started = time.perf_counter()
        try:
            result = self._train(trial, spec, slot)
        finally:
            with self._lock:
                self.running.pop(trial.number, None)
        self._finish(trial, result, time.perf_counter() - started)

    def _train(self, trial: optuna.Trial, spec: TrialSpec, slot: Slot) -> TrialResult:
        interval = self.storage.get_heartbeat_interval() or 10
        last_beat = 0.0
        stop_deadline: float | None = None
        try:
            process = self._pool.acquire(slot)
            process.start_trial(spec)
            while True:
                if time.monotonic() - last_beat >= interval:
                    self.storage.record_heartbeat(trial._trial_id)
                    last_beat = time.monotonic()
                if self.cancelled and stop_deadline is None:
                    process.send_control("stop")
                    stop_deadline = time.monotonic() + STOP_GRACE
                elif stop_deadline is not None and time.monotonic() > stop_deadline:
                    process.kill()  # it ignored the stop; the pool starts a new one
                    return TrialResult(trial_id=trial._trial_id, status="cancelled", reason="Killed: it did not stop when cancelled.")
                message = process.receive(timeout=0.2)
                if message is None:
                    continue
                if isinstance(message, TrialResult):
                    return message
                self._handle(trial, process, message)
        except TrialProcessDied as error:
            return TrialResult(trial_id=trial._trial_id, status="failed", reason=str(error))

    def _handle(self, trial: optuna.Trial, process: Any, message: Any) -> None:
        number = trial.number
        if isinstance(message, Started):
            Trial.objects.filter(pk=trial._trial_id).update(
                architecture=message.architecture, param_count=message.param_count, worker=message.worker
            )
            self._emit("trial.started", trial=number, architecture=message.architecture, param_count=message.param_count)
        elif isinstance(message, Progress):
            with self._lock:
                self.running[number] = {"epoch": message.epoch, "epochs": message.epochs, "fraction": message.fraction}
            self._emit("trial.progress", trial=number, epoch=message.epoch, epochs=message.epochs, fraction=message.fraction, metrics=message.metrics)
        elif isinstance(message, EpochEnd):
            self._record_epoch(trial, message)
            trial.report(message.score, message.epoch)
            if self.study.pruner == Pruner.NONE:
                return  # the trial did not wait; a cancel reaches it through _train
            if self.cancelled:
                action = "stop"
            else:
                action = "prune" if trial.should_prune() else "continue"
            process.send_control(action)

    def _record_epoch(self, trial: optuna.Trial, message: EpochEnd) -> None:
        metrics = message.metrics
        TrialEpoch.objects.update_or_create(
            trial_id=trial._trial_id,
            epoch=message.epoch,
            defaults={
                "loss": metrics.get("loss"),
                "accuracy": metrics.get("accuracy"),
                "val_loss": metrics.get("val_loss"),
                "val_accuracy": metrics.get("val_accuracy"),
                "seconds": message.seconds,
            },
        )
        with self._lock:
            self.running[trial.number] = {"epoch": message.epoch, "epochs": message.epochs, "fraction": 1.0}
        self._emit("trial.epoch", trial=trial.number, epoch=message.epoch, epochs=message.epochs, metrics=metrics)

    def _finish(self, trial: optuna.Trial, result: TrialResult, seconds: float) -> None:
        """Write what the trial produced, then tell Optuna how it ended."""
        Trial.objects.filter(pk=trial._trial_id).update(
            accuracy=result.accuracy,
            health_score=result.health_score,
            total_score=result.total_score,
            health_metrics=result.health,
            param_count=result.param_count,
            error_message=result.reason if result.status != "complete" else "",
            artifacts=result.artifacts,
            **({"architecture": result.architecture} if result.architecture else {}),
        )
        for key in ("accuracy", "health_score", "total_score"):
            value = getattr(result, key)
            if value is not None:
                trial.set_user_attr(key, value)
        if result.status in ("complete", "unhealthy") and result.total_score is not None:
            if result.status == "unhealthy":
                trial.set_user_attr("unhealthy", result.reason)
            frozen = self._optuna_study.tell(trial, result.total_score)
        elif result.status == "pruned":
            frozen = self._optuna_study.tell(trial, state=TrialState.PRUNED)
        else:
            frozen = self._optuna_study.tell(trial, state=TrialState.FAIL)
        self._after_finish(trial._trial_id, trial.number, frozen.state, result, seconds)

    def _after_finish(
        self, trial_id: int, number: int, state: TrialState, result: TrialResult, seconds: float
    ) -> None:
        with self._lock:
            if state == TrialState.FAIL and result.status == "failed":
                self._consecutive_failures += 1
                limit = settings.HPO_MAX_CONSECUTIVE_FAILURES
                if self._consecutive_failures >= limit:
                    self._failed_reason = f"{limit} trials in a row failed; the last: {result.reason}"
            else:
                self._consecutive_failures = 0
            if state == TrialState.COMPLETE:
                self.durations.append(seconds)
            self._keep_best_model(trial_id, result)
        if result.status == "failed":
            logger.warning("trial %s of study %s failed: %s\n%s", number, self.study.pk, result.reason, result.traceback)
        self._emit(
            "trial.finished",
            trial=number,
            state=state.name,
            status=result.status,
            accuracy=result.accuracy,
            health_score=result.health_score,
            total_score=result.total_score,
            reason=result.reason,
            seconds=seconds,
        )

    def _keep_best_model(self, trial_id: int, result: TrialResult) -> None:
        """Keep only the best trial's model file, unless told to keep all (under the lock)."""
        if result.artifacts.get("model"):
            self._models[trial_id] = result.artifacts["model"]
        if settings.HPO_KEEP_ALL_MODELS or not self._models:
            return
        try:
            best_id = self._optuna_study.best_trial._trial_id
        except ValueError:  # no completed trial yet
            best_id = None
        for other_id, path in list(self._models.items()):
            if other_id == best_id:
                continue
            Path(path).unlink(missing_ok=True)
            artifacts = dict(Trial.objects.get(pk=other_id).artifacts or {})
            artifacts.pop("model", None)
            Trial.objects.filter(pk=other_id).update(artifacts=artifacts)
            del self._models[other_id]

    def snapshot(self) -> dict[str, Any]:
        """Counts, best values, running trials' progress and the ETA, for a display."""
        trials = Trial.objects.filter(study=self.study)
        counts = {state: trials.filter(state=state).count() for state in ("RUNNING", "COMPLETE", "PRUNED", "FAIL")}
        best = trials.filter(state="COMPLETE").order_by("-value").values("number", "value", "accuracy", "health_score").first()
        with self._lock:
            running = dict(self.running)
            durations = list(self.durations)
            remaining = self.study.n_trials - self._started
        average = sum(durations) / len(durations) if durations else None
        eta = None
        if average is not None:
            left = remaining + len(running)
            eta = average * left / max(1, len(self.slots))
        return {"counts": counts, "best": best, "running": running, "average_s": average, "eta_s": eta}
