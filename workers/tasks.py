"""The django-q2 tasks that run studies on a cluster: ``scheduler_tick`` and ``run_trial``.

One task per trial, not per study (../shared/DESIGN.md says why): a killed worker costs one
trial, a study spreads over every ``qcluster`` node up to its concurrency, and quotas and
priorities act between trials.

``scheduler_tick`` (after every start, cancel and trial end, and once a minute from a
django-q2 Schedule): fails trials whose heartbeat went stale (the study's retry limit
re-queues them as WAITING), forgets tickets whose task died or was lost, ends studies that
are done, then, for each runnable study by priority (higher first, then first queued),
enqueues ``run_trial`` tasks within the study's concurrency and the workspace's quota.

``run_trial(ticket_id)``: under the study row's lock, checks the ticket, the status and the
budget, and asks Optuna for a trial (a waiting retry first); so however many nodes run a
study, it never finishes more trials than its budget. Then trains it on this worker's slot
(``TrialExecution``), stopping within half a second of a cancel.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import socket
import time
import warnings
from datetime import timedelta
from typing import Any

import optuna
from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django_q.tasks import async_task
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from accounts.models import Workspace
from studies.events import publish
from studies.models import Executor, LogLevel, Status, Study
from studies.optuna_storage import storage_for_study
from studies.services import study_finish, study_log, study_mark_running
from trials.cost import gpu_price
from trials.models import Trial
from workers.engine.devices import Slot
from workers.engine.process import SlotPool
from workers.models import TrialTicket
from workers.runner import load_optuna_study
from workers.runpod_executor import RunPodExecution, study_budget_spent
from workers.slots import claim_worker_slot
from workers.trial_execution import FinishedTrial, TrialExecution, record_finished

logger = logging.getLogger(__name__)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed", category=UserWarning)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

RUNNABLE = (Status.QUEUED, Status.RUNNING)
STOP_POLL_S = 0.5

_pool: SlotPool | None = None
_slot: Slot | None = None


def _worker_pool() -> tuple[SlotPool, Slot]:
    """This worker process's slot and its warm slot process (kept across tasks)."""
    global _pool, _slot
    if _pool is None:
        _slot = claim_worker_slot()
        _pool = SlotPool([_slot], module=settings.HPO_TRIAL_MODULE)
        atexit.register(_pool.close)
        # A qcluster worker is a multiprocessing child: it ends through os._exit, which runs
        # multiprocessing's finalizers but not atexit.
        multiprocessing.util.Finalize(None, _pool.close, exitpriority=10)
    assert _slot is not None
    return _pool, _slot


def warm_worker() -> None:
    """Claim this worker's slot and start its slot process without waiting for it (the
    first trial waits, if it comes before the process is ready). Called when django-q2
    spawns the worker process (``post_spawn``); a failure here is only logged, the first
    task tries again."""
    try:
        pool, _slot = _worker_pool()
        pool.warm()
    except Exception:
        logger.exception("Could not warm this worker's slot process; its first trial will start it.")


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- budget ------------------------------------------------------------------------------------


def trials_to_run(study: Study) -> int:
    """New trials still in the budget plus waiting retries: how many ``run_trial`` tasks the
    study can still use. A failed trial that was retried does not count against the budget
    (its retry does)."""
    rows = Trial.objects.filter(study=study).aggregate(
        total=Count("id"),
        waiting=Count("id", filter=Q(state=TrialState.WAITING.name)),
        retries=Count("id", filter=Q(system_attrs_json__contains='"failed_trial"')),
    )
    counted = rows["total"] - rows["retries"]
    return max(0, study.n_trials - counted) + rows["waiting"]


# --- the scheduler -------------------------------------------------------------------------------


def scheduler_tick() -> str:
    """One pass of the scheduler; safe to run on any node, any number of times at once."""
    close_old_connections()
    active = Study.objects.filter(status__in=(Status.QUEUED, Status.RUNNING, Status.CANCELLING))
    for study in active:
        _fail_stale_trials(study)
    _forget_dead_tickets()
    for study in Study.objects.filter(status__in=(Status.RUNNING, Status.CANCELLING)):
        maybe_finish(study)
    dispatched = _dispatch()
    return f"dispatched {dispatched} run_trial task(s)"


def _fail_stale_trials(study: Study) -> None:
    storage = storage_for_study(study)
    stale = storage._get_stale_trial_ids(study.pk)
    if not stale:
        return
    fail_stale_trials(optuna.load_study(study_name=study.optuna_name, storage=storage))
    for trial in Trial.objects.filter(pk__in=stale, state=TrialState.FAIL.name):
        reason = "Its worker stopped sending heartbeats (killed or lost); retried if the retry limit allows."
        Trial.objects.filter(pk=trial.pk).update(outcome="failed", error_message=reason, progress={})
        study_log(study=study, level=LogLevel.WARNING, trial_number=trial.number, message=f"Trial failed: {reason}")
        publish(study.pk, "trial.finished", trial=trial.number, state="FAIL", status="failed", reason=reason)


def _forget_dead_tickets() -> None:
    now = timezone.now()
    lost = now - timedelta(seconds=int(settings.Q_CLUSTER["retry"]) + 60)
    TrialTicket.objects.filter(started_at__isnull=True, created_at__lt=lost).delete()
    # A started ticket whose trial is no longer running: its task died after the trial was
    # failed as stale (or it crashed between claiming and training).
    grace = now - timedelta(seconds=settings.HPO_HEARTBEAT_GRACE)
    TrialTicket.objects.filter(started_at__lt=grace).exclude(trial__state=TrialState.RUNNING.name).delete()


def maybe_finish(study: Study) -> Study:
    """End a study whose work is done: all trials ran (completed) or a cancel has drained
    (cancelled). Waiting retries of a cancelled study are failed, never run."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk)
        running = Trial.objects.filter(study=study, state=TrialState.RUNNING.name).exists()
        if running:
            return study
        if study.status == Status.CANCELLING:
            storage = storage_for_study(study)
            for trial_id in Trial.objects.filter(study=study, state=TrialState.WAITING.name).values_list("id", flat=True):
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
            final = study.final_status or Status.CANCELLED
            return study_finish(study=study, status=final, reason=study.status_reason or "Cancelled.")
        if study.status == Status.RUNNING and trials_to_run(study) == 0 and not study.tickets.exists():
            return study_finish(study=study, status=Status.COMPLETED)
    return study


def _dispatch() -> int:
    """Enqueue run_trial tasks for runnable studies, by priority, within the limits."""
    enqueued = 0
    studies = (
        Study.objects.filter(status__in=RUNNABLE, workspace__isnull=False)
        .select_related("workspace")
        .order_by("-priority", "queued_at", "id")
    )
    for study in studies:
        with transaction.atomic():
            study = Study.objects.select_for_update(of=("self",)).select_related("workspace").get(pk=study.pk)
            if study.status not in RUNNABLE:
                continue
            tickets = study.tickets.count()
            unstarted = study.tickets.filter(started_at__isnull=True).count()
            free = study_concurrency(study) - tickets
            spent = gpu_budget_spent(study.workspace) or study_budget_spent(study)
            if spent is not None:
                if study.status_reason != spent:
                    Study.objects.filter(pk=study.pk).update(status_reason=spent)
                    study_log(study=study, level=LogLevel.WARNING, message=f"Not dispatching: {spent}")
                continue
            quota = study.workspace.max_concurrent_trials
            if quota is not None:
                in_workspace = TrialTicket.objects.filter(study__workspace=study.workspace).count()
                free = min(free, quota - in_workspace)
            wanted = min(free, trials_to_run(study) - unstarted)
            for _ in range(max(0, wanted)):
                ticket = TrialTicket.objects.create(study=study)
                transaction.on_commit(lambda ticket_id=ticket.pk: async_task("workers.tasks.run_trial", ticket_id))
                enqueued += 1
    return enqueued


def study_concurrency(study: Study) -> int:
    """Trials of the study at once. A cloud trial holds no local slot (its task only follows
    the job), so a ``runpod`` study runs its concurrency, capped by
    ``HPO_RUNPOD_MAX_CONCURRENCY``, whatever this cluster's slots."""
    if study.executor == Executor.RUNPOD:
        return min(study.concurrency, settings.HPO_RUNPOD_MAX_CONCURRENCY)
    return study.concurrency


def gpu_budget_spent(workspace: Workspace) -> str | None:
    """Why the workspace may not start trials this month, or ``None`` while its GPU-hours
    budget (if any) lasts. The month is the calendar month in UTC."""
    budget = workspace.gpu_hours_per_month
    if budget is None:
        return None
    now = timezone.now()
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    used_seconds = (
        Trial.objects.filter(study__workspace=workspace, datetime_start__gte=month_start).aggregate(s=Sum("gpu_seconds"))["s"]
        or 0.0
    )
    if used_seconds / 3600 < budget:
        return None
    price = gpu_price(workspace.pk)
    dollars = f", about ${used_seconds / 3600 * price[1]:.2f} at the {price[0]} price" if price else ""
    return (
        f"The workspace's GPU budget for {now:%B %Y} is spent ({used_seconds / 3600:.2f} of {budget:g} GPU hours{dollars}); "
        "raise it, or wait for next month."
    )


# --- one trial --------------------------------------------------------------------------------------


class _StopCheck:
    """Polls the study's status and the trial's cancel flag, at most every half second."""

    def __init__(self, study_id: int, trial_id: int) -> None:
        self.study_id, self.trial_id = study_id, trial_id
        self._checked = 0.0
        self._stop = False

    def __call__(self) -> bool:
        if not self._stop and time.monotonic() - self._checked >= STOP_POLL_S:
            self._checked = time.monotonic()
            status = Study.objects.filter(pk=self.study_id).values_list("status", flat=True).first()
            cancelled = Trial.objects.filter(pk=self.trial_id, cancel_requested=True).exists()
            self._stop = cancelled or status not in RUNNABLE
        return self._stop


def run_trial(ticket_id: int) -> str:
    """Run one trial of the ticket's study on this worker (see the module docstring). A
    ``runpod`` study's trial trains on RunPod (``workers.runpod_executor``): this worker only
    follows the job, and takes its local slot only if the trial falls back to local training."""
    close_old_connections()
    executor = TrialTicket.objects.filter(pk=ticket_id).values_list("study__executor", flat=True).first()
    cloud = executor == Executor.RUNPOD
    if not cloud:
        pool, slot = _worker_pool()
    claimed = _claim(ticket_id)
    if claimed is None:
        return "nothing to do"
    study, optuna_study, trial = claimed
    common: dict[str, Any] = {
        "study": study,
        "optuna_study": optuna_study,
        "storage": optuna_study._storage,
        "trial": trial,
        "emit": lambda kind, **data: publish(study.pk, kind, **data),
        "should_stop": _StopCheck(study.pk, trial._trial_id),
    }
    try:
        if cloud:
            finished = RunPodExecution(local=_worker_pool, **common).run()
        else:
            finished = TrialExecution(pool=pool, **common).run(slot)
        _after_trial(study, finished)
    finally:
        # (The trial's end already refreshed the snapshot; maybe_finish does on a status change.)
        TrialTicket.objects.filter(pk=ticket_id).delete()
        # The tick ends the study if this was its last trial (maybe_finish), then dispatches
        # the next trials now, in this worker, rather than through the broker: a round trip
        # less between one trial's end and the next one's start.
        scheduler_tick()
    return f"trial {finished.number}: {finished.result.status}"


def _claim(ticket_id: int) -> tuple[Study, optuna.Study, optuna.Trial] | None:
    """Take the ticket's place in the budget and ask Optuna for the trial, under the study
    lock; ``None`` when the ticket is gone, the study stopped or the budget is spent."""
    with transaction.atomic():
        ticket = TrialTicket.objects.select_for_update().filter(pk=ticket_id, started_at__isnull=True).first()
        if ticket is None:
            return None  # cancelled, cleaned up, or delivered twice
        study = Study.objects.select_for_update().get(pk=ticket.study_id)
        if study.status not in RUNNABLE or trials_to_run(study) <= 0:
            ticket.delete()
            return None
        study = study_mark_running(study=study)
        storage = storage_for_study(study)
        # A fresh sampler per task: the trial count moves its seed, or every task would
        # draw the same start-up point.
        existing = Trial.objects.filter(study=study).count()
        optuna_study = load_optuna_study(study, storage, parallel=study.concurrency > 1, offset=existing)
        trial = optuna_study.ask()
        ticket.started_at = timezone.now()
        ticket.trial_id = trial._trial_id
        ticket.worker = _worker_name()
        ticket.save(update_fields=["started_at", "trial", "worker"])
    storage.record_heartbeat(trial._trial_id)
    study_log(study=study, trial_number=trial.number, message=f"Trial started on {ticket.worker}.")
    return study, optuna_study, trial


def _after_trial(study: Study, finished: FinishedTrial) -> None:
    record_finished(study, finished, lambda kind, **data: publish(study.pk, kind, **data))
    _fail_study_after_repeated_failures(study)


def _fail_study_after_repeated_failures(study: Study) -> None:
    """After ``HPO_MAX_CONSECUTIVE_FAILURES`` failed trials in a row (since the study was
    last queued), stop the study: its running trials are stopped like a cancel, and it ends
    failed, with the reason."""
    limit = settings.HPO_MAX_CONSECUTIVE_FAILURES
    ended = Trial.objects.filter(study=study, datetime_complete__isnull=False)
    if study.queued_at is not None:
        # Since the study was (re)queued: a resumed study starts a fresh count.
        ended = ended.filter(datetime_complete__gte=study.queued_at)
    last = list(
        ended.order_by("-datetime_complete", "-number")
        .values_list("outcome", "error_message")[:limit]
    )
    if len(last) < limit or any(outcome != "failed" for outcome, _ in last):
        return
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.status in RUNNABLE:
            locked.status = Status.CANCELLING
            locked.final_status = Status.FAILED
            locked.status_reason = f"{limit} trials in a row failed; the last: {last[0][1]}"
            locked.save(update_fields=["status", "final_status", "status_reason", "updated_at"])
            locked.tickets.filter(started_at__isnull=True).delete()
