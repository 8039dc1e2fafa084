"""Studies: what to search, with which budget and executor, and where it stands.

A ``Study`` row is also the Optuna study (``studies.optuna_storage.DjangoStorage``): Optuna
reads and writes its directions and attributes here, so nothing is synced or duplicated.
"""
from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import models


class TaskKind(models.TextChoices):
    IMAGE = "image", "Image classification (CNN)"
    TEXT = "text", "Text classification (LSTM)"


class Mode(models.TextChoices):
    SIMPLE = "simple", "Accuracy"
    HEALTH = "health", "Accuracy + model health"


class Executor(models.TextChoices):
    LOCAL = "local", "Local workers"
    RUNPOD = "runpod", "RunPod serverless GPUs"


class Pruner(models.TextChoices):
    NONE = "none", "No pruning"
    MEDIAN = "median", "Median"
    HYPERBAND = "hyperband", "Hyperband (successive halving)"


class Status(models.TextChoices):
    DRAFT = "draft", "Draft"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    CANCELLING = "cancelling", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING, Status.CANCELLING)
FINAL_STATUSES = (Status.CANCELLED, Status.COMPLETED, Status.FAILED)


class Study(models.Model):
    # A study made through Optuna directly (optuna.create_study(storage=DjangoStorage()))
    # has no workspace: only operators see it, in the admin.
    workspace = models.ForeignKey(
        "accounts.Workspace",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="studies",
    )
    name = models.CharField(max_length=200)
    # The name Optuna knows the study by; unique over the whole storage, as Optuna demands.
    optuna_name = models.CharField(max_length=300, unique=True)
    dataset = models.CharField(max_length=64, default="digits")
    task_kind = models.CharField(max_length=8, choices=TaskKind.choices, default=TaskKind.IMAGE)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.SIMPLE)
    directions = models.JSONField(
        default=list, help_text='Optuna objective directions, e.g. ["maximize"].'
    )
    search_space = models.JSONField(
        default=dict, blank=True, help_text="Overrides: fixed values or narrowed ranges by name."
    )
    dataset_options = models.JSONField(
        default=dict,
        blank=True,
        help_text="Data set options: vocab_size and sequence_length (text), path (GTSRB, uploads).",
    )
    health_weights = models.JSONField(
        default=dict,
        blank=True,
        help_text='Mode "health": weights of accuracy and health in the total score.',
    )
    n_trials = models.PositiveIntegerField(default=20, help_text="Trial budget.")
    max_epochs = models.PositiveSmallIntegerField(default=10)
    sample_fraction = models.FloatField(default=1.0)
    seed = models.BigIntegerField(null=True, blank=True)
    concurrency = models.PositiveSmallIntegerField(default=1)
    executor = models.CharField(max_length=8, choices=Executor.choices, default=Executor.LOCAL)
    pruner = models.CharField(max_length=10, choices=Pruner.choices, default=Pruner.NONE)
    priority = models.SmallIntegerField(default=0, help_text="Higher runs first.")
    retry_limit = models.PositiveSmallIntegerField(
        default=2, help_text="How often a trial whose worker died is retried."
    )

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    status_reason = models.TextField(blank=True)
    # While cancelling: how the study ends once its running trials stop (cancelled, or
    # failed when too many trials in a row failed).
    final_status = models.CharField(max_length=10, choices=Status.choices, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # The progress snapshot (counts, best values, running trials, ETA), rewritten as trials
    # move (throttled); what a page opened late shows first.
    progress = models.JSONField(default=dict, blank=True)
    progress_updated_at = models.DateTimeField(null=True, blank=True)

    # Optuna's study attributes, as json.dumps text: values may be NaN or infinite, which
    # PostgreSQL's jsonb rejects.
    user_attrs_json = models.TextField(default="{}")
    system_attrs_json = models.TextField(default="{}")

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "name"], name="study_name_unique_in_workspace"
            ),
            models.CheckConstraint(condition=models.Q(n_trials__gte=1), name="study_budget_positive"),
            models.CheckConstraint(
                condition=models.Q(concurrency__gte=1), name="study_concurrency_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(sample_fraction__gt=0) & models.Q(sample_fraction__lte=1),
                name="study_sample_fraction_range",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=[s.value for s in Status]), name="study_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["workspace", "-created_at"]),
            models.Index(fields=["status", "-priority", "queued_at"]),
        ]

    def __str__(self) -> str:
        return self.name or self.optuna_name

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def user_attrs(self) -> dict[str, Any]:
        return json.loads(self.user_attrs_json)

    @property
    def system_attrs(self) -> dict[str, Any]:
        return json.loads(self.system_attrs_json)


class StudyParamDistribution(models.Model):
    """The first distribution a study saw for a parameter name; later ones must be
    compatible with it (Optuna's rule). Written once per name, read by every worker."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="param_distributions")
    name = models.CharField(max_length=200)
    distribution_json = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "name"], name="param_distribution_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} in {self.study}"


class LogLevel(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class StudyLogEntry(models.Model):
    """One line of a study's log: start, each trial's params and result, errors with their
    traceback, cancellation. The same whether the study came from the CLI, API or pages."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="log_entries")
    created_at = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=8, choices=LogLevel.choices, default=LogLevel.INFO)
    trial_number = models.PositiveIntegerField(null=True, blank=True)
    message = models.TextField()
    details = models.TextField(blank=True, help_text="A traceback, or other long detail.")

    class Meta:
        ordering = ["study_id", "created_at", "id"]
        indexes = [models.Index(fields=["study", "created_at"])]
        verbose_name_plural = "study log entries"

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:80]}"


def upload_file_path(upload: "DatasetUpload", filename: str) -> str:
    """Where an upload's file lives under MEDIA_ROOT: never the client's file name, which
    could hold path tricks; only its extension survives."""
    import uuid
    from pathlib import PurePath

    return f"uploads/{upload.workspace_id}/{uuid.uuid4().hex}{PurePath(filename).suffix.lower()}"


class DatasetUpload(models.Model):
    """A workspace's own data set: a validated .npz of images (arrays x, y) or a .csv of
    texts (columns text,label). Studies use it with dataset "upload"; the file's server
    path goes into their dataset_options and is never shown to clients."""

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="uploads")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=TaskKind.choices)
    file = models.FileField(upload_to=upload_file_path, max_length=500)
    size_bytes = models.BigIntegerField()
    original_filename = models.CharField(max_length=255, blank=True)
    summary = models.JSONField(
        default=dict, blank=True, help_text="From validation: samples, classes, class_names, shape."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="upload_name_unique_in_workspace"),
            models.CheckConstraint(
                condition=models.Q(kind__in=[k.value for k in TaskKind]), name="upload_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name
