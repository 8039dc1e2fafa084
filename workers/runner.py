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
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from django.conf import settings
from django.db import close_old_connections, connections
from optuna.trial import TrialState

from studies.models import Pruner, Status, Study
from studies.optuna_storage import storage_for_study
from studies.progress import compute_progress
from studies.services import study_finish, study_mark_running
from trials.models import Trial
from workers.engine.devices import Slot, detect_gpus, plan_slots
from workers.engine.process import SlotPool
from workers.engine.search_space import default_params
from workers.trial_execution import FinishedTrial, TrialExecution, record_finished

logger = logging.getLogger(__name__)
# The runner records heartbeats itself (Optuna's own heartbeat thread lives in optimize()).
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed", category=UserWarning)
# Multivariate TPE is marked experimental; it is the sampler we choose on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

Event = dict[str, Any]


def make_sampler(study: Study, *, parallel: bool, offset: int = 0) -> optuna.samplers.BaseSampler:
    """Multivariate TPE, seeded by the study. A third of the budget (at most 5 trials, the
    default configuration included) samples at random before TPE takes over; with trials
    running side by side, the constant liar keeps them from sampling the same point.
    ``offset`` moves the seed for a sampler made afresh for each trial (cluster tasks), so
    that each one draws a different start-up point."""
    startup = min(5, max(1, study.n_trials // 3))
    seed = None if study.seed is None else study.seed + offset * 7919
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=startup, multivariate=True, constant_liar=parallel
    )


def load_optuna_study(study: Study, storage: Any, *, parallel: bool, offset: int = 0) -> optuna.Study:
    """The Optuna study with the platform's sampler and pruner. A study without trials gets
    its first one enqueued: the default configuration (KerasTuner does the same), a
    known-good point for TPE to improve on."""
    optuna_study = optuna.load_study(
        study_name=study.optuna_name,
        storage=storage,
        sampler=make_sampler(study, parallel=parallel, offset=offset),
        pruner=make_pruner(study.pruner, max_epochs=study.max_epochs),
    )
    if not Trial.objects.filter(study=study).exists():
        optuna_study.enqueue_trial(
            default_params(study.task_kind, study.search_space, max_epochs=study.max_epochs),
            user_attrs={"default_configuration": True},
        )
    return optuna_study


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


class StudyRunner:
    """Runs one study to its end on this machine. Not reusable: one ``run`` per instance."""

    def __init__(
        self,
        study: Study,
        *,
        slots: list[Slot] | None = None,
        on_event: Callable[[Event], None] | None = None,
        trial_module: str | None = None,
    ) -> None:
        self.study = study
        slots = slots if slots is not None else machine_slots()
        self.slots = slots[: max(1, min(study.concurrency, len(slots)))]
        self.on_event = on_event or (lambda event: None)
        self.storage = storage_for_study(study)
        # The tests run a TensorFlow-free trial process.
        self.trial_module = trial_module or settings.HPO_TRIAL_MODULE
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._started = 0
        self._consecutive_failures = 0
        self._failed_reason = ""

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
        self._optuna_study = load_optuna_study(study, self.storage, parallel=len(self.slots) > 1)
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
        execution = TrialExecution(
            study=self.study,
            optuna_study=self._optuna_study,
            storage=self.storage,
            trial=self._optuna_study.ask(),
            pool=self._pool,
            emit=self._emit,
            should_stop=lambda: self.cancelled,
        )
        self._after_finish(execution.run(slot))

    def _after_finish(self, finished: FinishedTrial) -> None:
        result = finished.result
        with self._lock:
            if result.status == "failed":
                self._consecutive_failures += 1
                limit = settings.HPO_MAX_CONSECUTIVE_FAILURES
                if self._consecutive_failures >= limit:
                    self._failed_reason = f"{limit} trials in a row failed; the last: {result.reason}"
            else:
                self._consecutive_failures = 0
        record_finished(self.study, finished, self._emit)

    def snapshot(self) -> dict[str, Any]:
        """The study's progress snapshot, as every display reads it."""
        return compute_progress(Study.objects.get(pk=self.study.pk))
