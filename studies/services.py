"""Writes on studies. Views, the API, the admin and ``run_study`` all call these.

Each service is keyword-only, checks the actor's role first (outsiders get ``NotFound``),
runs in one transaction and records an audit entry in it.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.errors import ValidationError
from accounts.models import Role, Workspace
from accounts.services import audit_record, require_role
from studies.events import publish
from studies.models import Executor, LogLevel, Mode, Pruner, Status, Study, StudyLogEntry
from studies.progress import refresh_progress
from workers.engine.catalog import DATASETS
from workers.engine.scoring import normalize_weights
from workers.engine.search_space import SearchSpaceError, validate_overrides

logger = logging.getLogger(__name__)

# (minimum, maximum) of each bounded number a user sets.
LIMITS: dict[str, tuple[int, int]] = {
    "n_trials": (1, 10_000),
    "max_epochs": (1, 1_000),
    "concurrency": (1, 64),
    "priority": (-100, 100),
    "retry_limit": (0, 10),
}
DIRECTIONS = ("maximize", "minimize")


def _choice(value: str, choices: Any, field: str) -> str:
    allowed = [c.value for c in choices]
    if value not in allowed:
        raise ValidationError(f"{value!r} is not allowed; choose one of {', '.join(allowed)}.", field=field)
    return value


def _bounded(value: Any, field: str) -> int:
    low, high = LIMITS[field]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{field} must be a whole number from {low} to {high}; got {value!r}.", field=field)
    return value


def _validate_fields(fields: dict[str, Any]) -> dict[str, Any]:
    name = str(fields["name"]).strip()
    if not name or len(name) > 200:
        raise ValidationError("A study needs a name of 1 to 200 characters.", field="name")
    if fields["dataset"] not in DATASETS:
        raise ValidationError(
            f"Unknown data set {fields['dataset']!r}; choose one of {', '.join(DATASETS)}.",
            field="dataset",
        )
    fraction = fields["sample_fraction"]
    if not isinstance(fraction, (int, float)) or not (0 < fraction <= 1) or math.isnan(fraction):
        raise ValidationError(
            f"sample_fraction must be above 0 and at most 1; got {fraction!r}.", field="sample_fraction"
        )
    directions = fields["directions"]
    if (
        not isinstance(directions, list)
        or not directions
        or any(d not in DIRECTIONS for d in directions)
    ):
        raise ValidationError(
            f"directions must be a non-empty list of {' or '.join(DIRECTIONS)}; got {directions!r}.",
            field="directions",
        )
    if not isinstance(fields["search_space"], dict):
        raise ValidationError("search_space must be an object of parameter overrides.", field="search_space")
    if not isinstance(fields["dataset_options"], dict):
        raise ValidationError("dataset_options must be an object.", field="dataset_options")
    seed = fields["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise ValidationError(f"seed must be a whole number from 0 to {2**32 - 1}; got {seed!r}.", field="seed")
    for field in LIMITS:
        _bounded(fields[field], field)
    _choice(fields["mode"], Mode, "mode")
    _choice(fields["executor"], Executor, "executor")
    _choice(fields["pruner"], Pruner, "pruner")
    kind = DATASETS[fields["dataset"]].kind
    try:
        search_space = validate_overrides(kind, fields["search_space"], max_epochs=fields["max_epochs"])
    except SearchSpaceError as error:
        raise ValidationError(str(error), field="search_space") from None
    try:
        weights = normalize_weights(fields["health_weights"] or None) if fields["health_weights"] else {}
    except ValueError as error:
        raise ValidationError(str(error), field="health_weights") from None
    return {
        **fields,
        "name": name,
        "sample_fraction": float(fraction),
        "search_space": search_space,
        "health_weights": weights,
    }


@transaction.atomic
def study_create(
    *,
    user: AbstractBaseUser,
    workspace: Workspace,
    name: str,
    dataset: str = "digits",
    mode: str = Mode.SIMPLE,
    n_trials: int = 20,
    max_epochs: int = 10,
    sample_fraction: float = 1.0,
    seed: int | None = None,
    concurrency: int = 1,
    executor: str = Executor.LOCAL,
    pruner: str = Pruner.NONE,
    priority: int = 0,
    retry_limit: int = 2,
    search_space: dict[str, Any] | None = None,
    dataset_options: dict[str, Any] | None = None,
    health_weights: dict[str, float] | None = None,
    directions: list[str] | None = None,
) -> Study:
    """Create a draft study in ``workspace``; members and above may. The task kind (CNN for
    images, LSTM for text) follows from the data set."""
    require_role(user=user, workspace=workspace, at_least=Role.MEMBER)
    fields = _validate_fields(
        {
            "name": name,
            "dataset": dataset,
            "mode": mode,
            "n_trials": n_trials,
            "max_epochs": max_epochs,
            "sample_fraction": sample_fraction,
            "seed": seed,
            "concurrency": concurrency,
            "executor": executor,
            "pruner": pruner,
            "priority": priority,
            "retry_limit": retry_limit,
            "search_space": {} if search_space is None else search_space,
            "dataset_options": {} if dataset_options is None else dataset_options,
            "health_weights": {} if health_weights is None else health_weights,
            "directions": ["maximize"] if directions is None else directions,
        }
    )
    duplicate = ValidationError(
        f"A study named {fields['name']!r} already exists in {workspace.name!r}; choose another name.",
        field="name",
    )
    if Study.objects.filter(workspace=workspace, name=fields["name"]).exists():
        raise duplicate
    try:
        with transaction.atomic():
            study = Study.objects.create(
                workspace=workspace,
                optuna_name=f"{workspace.slug}/{fields['name']}",
                task_kind=DATASETS[fields["dataset"]].kind,
                created_by=user,
                **fields,
            )
    except IntegrityError:  # a concurrent create of the same name won
        raise duplicate from None
    audit_record(
        actor=user,
        action="study.create",
        target=study,
        workspace=workspace,
        details={"dataset": study.dataset, "mode": study.mode, "n_trials": study.n_trials},
    )
    return study


@transaction.atomic
def study_cancel(*, user: AbstractBaseUser, study: Study, reason: str = "") -> Study:
    """Cancel a study. Not yet started: it ends cancelled at once. Running: it becomes
    cancelling, and the workers stop its trials and end it (completed trials stay)."""
    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.workspace is None:
        raise ValidationError("Studies made through Optuna directly are not run by the platform.")
    require_role(user=user, workspace=study.workspace, at_least=Role.MEMBER)
    if study.status in (Status.CANCELLED, Status.COMPLETED, Status.FAILED, Status.CANCELLING):
        raise ValidationError(
            f"Study {study.name!r} is already {study.get_status_display().lower()}.", field="status"
        )
    previous = study.status
    reason = reason or f"Cancelled by {user.get_username()}."
    if study.status == Status.RUNNING:
        study.status = Status.CANCELLING
    else:
        study.status = Status.CANCELLED
        study.finished_at = timezone.now()
    study.status_reason = reason
    study.save(update_fields=["status", "status_reason", "finished_at", "updated_at"])
    # Queued run_trial tasks find no ticket and do nothing; running ones see the status
    # within half a second and stop their trial.
    study.tickets.filter(started_at__isnull=True).delete()
    audit_record(
        actor=user,
        action="study.cancel",
        target=study,
        workspace=study.workspace,
        details={"from": previous, "to": study.status},
    )
    study_log(study=study, message=reason)
    _status_changed(study)
    return study


def _status_changed(study: Study) -> None:
    refresh_progress(study, force=True)
    publish(study.pk, "study.status", status=study.status, reason=study.status_reason)
    if study.status in (Status.CANCELLED, Status.COMPLETED, Status.FAILED):
        publish(study.pk, "study.finished", status=study.status, reason=study.status_reason)


def _tick_after_commit() -> None:
    """Ask the scheduler to look at the studies once this transaction has committed."""
    from django_q.tasks import async_task  # by name: studies does not import workers

    transaction.on_commit(lambda: async_task("workers.tasks.scheduler_tick"))


def study_log(
    *, study: Study, message: str, level: str = LogLevel.INFO, trial_number: int | None = None, details: str = ""
) -> StudyLogEntry:
    """Append to the study's log (also written to the server log)."""
    logger.log(
        {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}[level],
        "study %s%s: %s", study.pk, f" trial {trial_number}" if trial_number is not None else "", message,
    )
    return StudyLogEntry.objects.create(
        study=study, level=level, trial_number=trial_number, message=message[:5000], details=details[-50000:]
    )


@transaction.atomic
def study_start(*, user: AbstractBaseUser, study: Study) -> Study:
    """Queue a draft study for the cluster's workers (members and above). The scheduler
    dispatches its trials as ``run_trial`` tasks, highest priority first."""
    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.workspace is None:
        raise ValidationError("Studies made through Optuna directly are not run by the platform.")
    require_role(user=user, workspace=study.workspace, at_least=Role.MEMBER)
    if study.status != Status.DRAFT:
        raise ValidationError(
            f"Study {study.name!r} is {study.get_status_display().lower()}; only a draft can start.",
            field="status",
        )
    study.status = Status.QUEUED
    study.queued_at = timezone.now()
    study.save(update_fields=["status", "queued_at", "updated_at"])
    audit_record(actor=user, action="study.start", target=study, workspace=study.workspace)
    study_log(study=study, message=f"Queued by {user.get_username()}: {study.n_trials} trials on {study.dataset}.")
    _status_changed(study)
    _tick_after_commit()
    return study


@transaction.atomic
def trial_cancel(*, user: AbstractBaseUser, trial: Any) -> Any:
    """Stop one running trial (members and above); it ends as cancelled, the study goes on."""
    from trials.models import Trial

    trial = Trial.objects.select_for_update(of=("self",)).select_related("study__workspace").get(pk=trial.pk)
    if trial.study.workspace is None:
        raise ValidationError("Trials of studies made through Optuna directly are not run by the platform.")
    require_role(user=user, workspace=trial.study.workspace, at_least=Role.MEMBER)
    if trial.state != "RUNNING":
        raise ValidationError(f"Trial {trial.number} is not running ({trial.state.lower()}).", field="state")
    trial.cancel_requested = True
    trial.save(update_fields=["cancel_requested"])
    study_log(study=trial.study, trial_number=trial.number, message=f"Trial cancelled by {user.get_username()}.")
    return trial


@transaction.atomic
def study_mark_running(*, study: Study) -> Study:
    """A worker begins running the study (from draft or queued). A cancelled or ended study
    is not restarted: ``ValidationError``."""
    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.status not in (Status.DRAFT, Status.QUEUED, Status.RUNNING):
        raise ValidationError(
            f"Study {study.name!r} is {study.get_status_display().lower()} and cannot run.", field="status"
        )
    if study.status == Status.RUNNING and study.started_at and not study.status_reason:
        return study  # already running: no write (workers call this for every trial)
    now = timezone.now()
    previous = study.status
    study.status = Status.RUNNING
    study.queued_at = study.queued_at or now
    study.started_at = study.started_at or now
    study.status_reason = ""
    study.save(update_fields=["status", "queued_at", "started_at", "status_reason", "updated_at"])
    if previous != Status.RUNNING:
        study_log(study=study, message="Running.")
        _status_changed(study)
    return study


@transaction.atomic
def study_finish(*, study: Study, status: str, reason: str = "") -> Study:
    """End a study as completed, cancelled or failed, with a reason a user can read."""
    if status not in (Status.COMPLETED, Status.CANCELLED, Status.FAILED):
        raise ValueError(f"{status!r} is not a final status")
    study = Study.objects.select_for_update().get(pk=study.pk)
    study.status = status
    study.status_reason = reason
    study.finished_at = timezone.now()
    study.save(update_fields=["status", "status_reason", "finished_at", "updated_at"])
    study.tickets.all().delete()
    audit_record(
        actor=None, action=f"study.{status}", target=study, workspace=study.workspace, details={"reason": reason}
    )
    study_log(
        study=study,
        level=LogLevel.ERROR if status == Status.FAILED else LogLevel.INFO,
        message=f"Study {status}" + (f": {reason}" if reason else "."),
    )
    _status_changed(study)
    return study
