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
from studies.uploads import study_upload_options
from workers.engine.catalog import DATASETS, UPLOAD
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


def _validate_fields(fields: dict[str, Any], *, upload_kind: str | None = None) -> dict[str, Any]:
    name = str(fields["name"]).strip()
    if not name or len(name) > 200:
        raise ValidationError("A study needs a name of 1 to 200 characters.", field="name")
    if fields["dataset"] not in DATASETS and not (fields["dataset"] == UPLOAD and upload_kind):
        raise ValidationError(
            f"Unknown data set {fields['dataset']!r}; choose one of {', '.join(DATASETS)}, "
            f"or {UPLOAD} (with upload_id).",
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
    kind = upload_kind or DATASETS[fields["dataset"]].kind
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
    upload_id: int | None = None,
) -> Study:
    """Create a draft study in ``workspace``; members and above may. The task kind (CNN for
    images, LSTM for text) follows from the data set. With ``dataset="upload"``,
    ``upload_id`` names one of the workspace's uploads and the server sets
    ``dataset_options["path"]`` (a client-given path is refused)."""
    require_role(user=user, workspace=workspace, at_least=Role.MEMBER)
    upload_kind, dataset_options = study_upload_options(
        workspace=workspace, dataset=dataset, upload_id=upload_id, dataset_options=dataset_options
    )
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
        },
        upload_kind=upload_kind,
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
                task_kind=upload_kind or DATASETS[fields["dataset"]].kind,
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


# --- Changing, deleting, resuming and cloning studies (the REST API's writes) -------------
# Imports kept here, with the services that use them, so this section stays self-contained.
import copy  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from django.conf import settings  # noqa: E402

from accounts.errors import PermissionDenied  # noqa: E402
from studies.models import ACTIVE_STATUSES  # noqa: E402

# The settings a user chooses: ``study_create``'s keywords, what PATCH may change and what
# a clone copies.
STUDY_FIELDS = (
    "name",
    "dataset",
    "mode",
    "n_trials",
    "max_epochs",
    "sample_fraction",
    "seed",
    "concurrency",
    "executor",
    "pruner",
    "priority",
    "retry_limit",
    "search_space",
    "dataset_options",
    "health_weights",
    "directions",
)
RESUMABLE_STATUSES = (Status.CANCELLED, Status.FAILED, Status.COMPLETED)


def _lock_platform_study(study: Study) -> Study:
    study = Study.objects.select_for_update().get(pk=study.pk)
    if study.workspace is None:
        raise ValidationError("Studies made through Optuna directly are not run by the platform.")
    return study


def _trials_counted(study: Study) -> int:
    """Trials that count against the budget: a failed trial that was retried does not (its
    retry does). The same rule as ``workers.tasks.trials_to_run``."""
    from trials.models import Trial

    trials = Trial.objects.filter(study=study)
    return trials.count() - trials.filter(system_attrs_json__contains='"failed_trial"').count()


# Data set options the server sets (an upload's or GTSRB's path, the upload's id), never a client.
SERVER_OPTION_KEYS = ("path", "upload_id")


def _options_for_update(study: Study, dataset: str, options: Any, upload_id: int | None) -> Any:
    """The data set options a change leaves: the server's keys carry over while the data set
    and upload stay the same, and go when either changes (``study_upload_options`` then sets
    a new upload's)."""
    if not isinstance(options, dict):
        return options  # _validate_fields names the problem
    own = {key: value for key, value in options.items() if key not in SERVER_OPTION_KEYS}
    if dataset != study.dataset or upload_id is not None:
        return own
    kept = {key: value for key, value in (study.dataset_options or {}).items() if key in SERVER_OPTION_KEYS}
    return {**own, **kept}


@transaction.atomic
def study_update(
    *, user: AbstractBaseUser, study: Study, changes: dict[str, Any], upload_id: int | None = None
) -> Study:
    """Change a draft study's settings (members and above), validated as ``study_create``
    validates them; ``upload_id`` picks another upload (with ``dataset="upload"``). Once
    started a study's settings are fixed: clone it to change them."""
    study = _lock_platform_study(study)
    require_role(user=user, workspace=study.workspace, at_least=Role.MEMBER)
    for field in changes:
        if field not in STUDY_FIELDS:
            raise ValidationError(f"{field} cannot be changed; allowed: {', '.join(STUDY_FIELDS)}.", field=field)
    if study.status != Status.DRAFT:
        raise ValidationError(
            f"Study {study.name!r} is {study.get_status_display().lower()}; only a draft can be "
            "changed (clone it to run it with other settings).",
            field="status",
        )
    current = {field: getattr(study, field) for field in STUDY_FIELDS}
    merged = {**current, **changes}
    options = _options_for_update(study, merged["dataset"], merged["dataset_options"], upload_id)
    upload_kind, merged["dataset_options"] = study_upload_options(
        workspace=study.workspace, dataset=merged["dataset"], upload_id=upload_id, dataset_options=options
    )
    fields = _validate_fields(merged, upload_kind=upload_kind)
    duplicate = ValidationError(
        f"A study named {fields['name']!r} already exists in {study.workspace.name!r}; choose another name.",
        field="name",
    )
    if Study.objects.filter(workspace=study.workspace, name=fields["name"]).exclude(pk=study.pk).exists():
        raise duplicate
    for field, value in fields.items():
        setattr(study, field, value)
    study.task_kind = upload_kind or DATASETS[study.dataset].kind
    study.optuna_name = f"{study.workspace.slug}/{study.name}"
    try:
        with transaction.atomic():
            study.save()
    except IntegrityError:  # a concurrent create or rename to the same name won
        raise duplicate from None
    changed = sorted(field for field in STUDY_FIELDS if current[field] != fields[field])
    audit_record(actor=user, action="study.update", target=study, workspace=study.workspace, details={"fields": changed})
    return study


@transaction.atomic
def study_delete(*, user: AbstractBaseUser, study: Study) -> None:
    """Delete a study with its trials, log and model files: admins, or the member who made
    it; not while it is queued or running. The files go once the deletion has committed."""
    study = _lock_platform_study(study)
    role = require_role(user=user, workspace=study.workspace, at_least=Role.MEMBER)
    if not role.at_least(Role.ADMIN) and study.created_by_id != user.pk:
        raise PermissionDenied(
            f"Only admins of {study.workspace.name!r} or the member who created study {study.name!r} may delete it."
        )
    if study.status in ACTIVE_STATUSES:
        raise ValidationError(
            f"Study {study.name!r} is {study.get_status_display().lower()}; cancel it and wait until it "
            "has stopped before deleting it.",
            field="status",
        )
    folder = Path(settings.MEDIA_ROOT) / "studies" / str(study.pk)
    audit_record(
        actor=user,
        action="study.delete",
        target=study,
        workspace=study.workspace,
        details={"status": study.status, "trials": study.trials.count()},
    )
    study.delete()
    transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))


@transaction.atomic
def study_resume(*, user: AbstractBaseUser, study: Study, n_trials: int | None = None) -> Study:
    """Queue a cancelled or failed study again to run the rest of its budget (members and
    above); ``n_trials`` may raise the budget. A completed study resumes only with a larger
    ``n_trials``. Trials already run are kept and count against the budget."""
    study = _lock_platform_study(study)
    require_role(user=user, workspace=study.workspace, at_least=Role.MEMBER)
    if study.status not in RESUMABLE_STATUSES:
        raise ValidationError(
            f"Study {study.name!r} is {study.get_status_display().lower()}; only a cancelled, failed "
            "or completed study can be resumed.",
            field="status",
        )
    if n_trials is not None:
        _bounded(n_trials, "n_trials")
        if n_trials < study.n_trials:
            raise ValidationError(
                f"n_trials can only grow when resuming: it is {study.n_trials}; got {n_trials}.", field="n_trials"
            )
    budget = study.n_trials if n_trials is None else n_trials
    counted = _trials_counted(study)
    if study.status == Status.COMPLETED and budget <= study.n_trials:
        raise ValidationError(
            f"Study {study.name!r} completed its {study.n_trials} trials; resume it with a larger n_trials.",
            field="n_trials",
        )
    if budget <= counted:
        raise ValidationError(
            f"Study {study.name!r} has run {counted} of its {budget} trials; resume it with a larger n_trials.",
            field="n_trials",
        )
    previous = study.status
    study.n_trials = budget
    study.status = Status.QUEUED
    study.status_reason = ""
    study.final_status = ""
    study.queued_at = timezone.now()
    study.finished_at = None
    study.save(
        update_fields=["n_trials", "status", "status_reason", "final_status", "queued_at", "finished_at", "updated_at"]
    )
    audit_record(
        actor=user,
        action="study.resume",
        target=study,
        workspace=study.workspace,
        details={"from": previous, "n_trials": budget},
    )
    study_log(study=study, message=f"Resumed by {user.get_username()}: {budget - counted} more trials to run.")
    _status_changed(study)
    _tick_after_commit()
    return study


def _copy_name(study: Study) -> str:
    """``"<name> (copy)"``, or ``"(copy 2)"``, ``"(copy 3)"``... when taken; cut to fit 200."""
    taken = set(Study.objects.filter(workspace=study.workspace).values_list("name", flat=True))
    n = 1
    while True:
        suffix = " (copy)" if n == 1 else f" (copy {n})"
        name = study.name[: 200 - len(suffix)] + suffix
        if name not in taken:
            return name
        n += 1


@transaction.atomic
def study_clone(*, user: AbstractBaseUser, study: Study, name: str | None = None) -> Study:
    """A new draft in the same workspace with the same settings (members and above), named
    ``name`` or ``"<name> (copy)"`` made unique. Trials, log and status are not copied."""
    if study.workspace is None:
        raise ValidationError("Studies made through Optuna directly are not run by the platform.")
    require_role(user=user, workspace=study.workspace, at_least=Role.MEMBER)
    settings_copy = {field: copy.deepcopy(getattr(study, field)) for field in STUDY_FIELDS}
    settings_copy["name"] = _copy_name(study) if name is None else name
    clone = study_create(user=user, workspace=study.workspace, **settings_copy)
    audit_record(
        actor=user, action="study.clone", target=clone, workspace=study.workspace, details={"from": study.pk}
    )
    return clone
