"""Trials and what they produced.

The Optuna half of a ``Trial`` (state, params, values, intermediate values, attributes,
heartbeat, times) is written only through ``studies.optuna_storage.DjangoStorage``; the
platform half (accuracy, health, architecture, epochs, artifacts) by the workers.
Optuna's fields are json.dumps text, not ``JSONField``: NaN and infinities must round-trip
and PostgreSQL's jsonb rejects them.
"""
from __future__ import annotations

import json
from typing import Any

from django.db import models


class TrialState(models.TextChoices):
    # The values are optuna.trial.TrialState names.
    RUNNING = "RUNNING", "Running"
    WAITING = "WAITING", "Waiting"
    COMPLETE = "COMPLETE", "Complete"
    PRUNED = "PRUNED", "Pruned"
    FAIL = "FAIL", "Failed"


FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def best_first(directions: list[str] | None) -> tuple[str, str]:
    """How to order a study's trials best first: by its first objective's direction
    (maximize unless it says minimize), ties to the earlier trial. One rule for the best
    model kept, the progress snapshot and the API."""
    first = directions[0] if directions else "maximize"
    return ("value" if first == "minimize" else "-value", "number")


class Trial(models.Model):
    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="trials")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=8, choices=TrialState.choices, default=TrialState.RUNNING)
    # The first objective, kept as a column so trials can be ordered by value in SQL;
    # values_json is the source of truth (all objectives, infinities included).
    value = models.FloatField(null=True, blank=True)
    values_json = models.TextField(null=True, blank=True)
    # {name: [internal value, distribution JSON]} in insertion order.
    params_json = models.TextField(default="{}")
    # {step: value}; NaN allowed.
    intermediate_values_json = models.TextField(default="{}")
    user_attrs_json = models.TextField(default="{}")
    system_attrs_json = models.TextField(default="{}")
    datetime_start = models.DateTimeField(null=True, blank=True)
    datetime_complete = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True, help_text="Database clock.")

    # What the platform adds.
    accuracy = models.FloatField(null=True, blank=True)
    health_metrics = models.JSONField(default=dict, blank=True)
    health_score = models.FloatField(null=True, blank=True)
    total_score = models.FloatField(null=True, blank=True)
    architecture = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per layer: type, input and output shapes, units or filters, kernel, "
        "activation, parameter count; plus totals.",
    )
    param_count = models.BigIntegerField(null=True, blank=True)
    executor = models.CharField(max_length=16, blank=True)
    gpu_seconds = models.FloatField(
        default=0.0, help_text="Wall seconds the trial trained times the GPUs it held (0 on CPU)."
    )
    worker = models.CharField(max_length=200, blank=True, help_text="Host and process that ran it.")
    outcome = models.CharField(
        max_length=10,
        blank=True,
        help_text="How training ended: complete, pruned, unhealthy, cancelled or failed "
        "(Optuna's state folds cancelled and failed into FAIL).",
    )
    error_message = models.TextField(blank=True)
    # While it trains: {"epoch", "epochs", "fraction"} (throttled writes); empty otherwise.
    progress = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    artifacts = models.JSONField(
        default=dict, blank=True, help_text="Paths under MEDIA_ROOT: model, plots data."
    )

    class Meta:
        ordering = ["study_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["study", "number"], name="trial_number_unique_in_study"),
            models.CheckConstraint(
                condition=models.Q(state__in=[s.value for s in TrialState]), name="trial_state_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["study", "state"]),
            models.Index(fields=["study", "value"]),
            models.Index(fields=["study", "total_score"]),
        ]

    def __str__(self) -> str:
        return f"Trial {self.number} of {self.study_id}"

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def params(self) -> dict[str, Any]:
        """Internal (stored) parameter values by name; the storage gives external ones."""
        return {name: pair[0] for name, pair in json.loads(self.params_json).items()}

    @property
    def values(self) -> list[float] | None:
        return json.loads(self.values_json) if self.values_json else None

    @property
    def intermediate_values(self) -> dict[int, float]:
        return {int(step): v for step, v in json.loads(self.intermediate_values_json).items()}

    @property
    def user_attrs(self) -> dict[str, Any]:
        return json.loads(self.user_attrs_json)

    @property
    def system_attrs(self) -> dict[str, Any]:
        return json.loads(self.system_attrs_json)


class TrialEpoch(models.Model):
    """One row per finished training epoch of a trial."""

    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="epochs")
    epoch = models.PositiveSmallIntegerField()
    loss = models.FloatField(null=True, blank=True)
    accuracy = models.FloatField(null=True, blank=True)
    val_loss = models.FloatField(null=True, blank=True)
    val_accuracy = models.FloatField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["trial_id", "epoch"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "epoch"], name="epoch_unique_in_trial")
        ]

    def __str__(self) -> str:
        return f"Epoch {self.epoch} of {self.trial}"
