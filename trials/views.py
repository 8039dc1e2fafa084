"""Trial pages (docs/portal.md): one trial with its 3D architecture viewer, training curves
and health analysis, and trials of a study side by side.

Views only translate HTTP: reads go through the selectors with ``user=`` (another
workspace's study or trial is a 404), and the page data handed to JavaScript
(``json_script``) is plain numbers and names: never a server path, never NaN.
"""
from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from accounts.errors import NotFound
from studies.models import Study, StudyLogEntry
from studies.plots import trial_details
from studies.selectors import study_get
from trials.api import external_params, finite
from trials.cost import CLOUD_EXECUTOR, trial_cost_usd
from trials.models import Trial, TrialState
from trials.selectors import trial_list

logger = logging.getLogger(__name__)

LOG_LINES_SHOWN = 300
COMPARE_MIN = 2
COMPARE_MAX = 8

# The health components (workers/engine/health.py's docstring has the formulas); kept here
# as words because importing the engine would load TensorFlow into the web process.
HEALTH_COMPONENTS: dict[str, tuple[str, str]] = {
    "gradients": ("Gradients", "Layers whose gradients neither vanish (< 1e-7) nor explode (> 1e3)."),
    "dead_units": ("Dead units", "ReLU units that are not always zero on the probe batch."),
    "saturation": ("Saturation", "tanh and sigmoid units that are not stuck at their bounds."),
    "loss_stability": ("Loss stability", "Share of the training-loss curve's movement that goes down."),
    "overfitting": ("Overfitting", "1 minus the train-validation accuracy gap over 0.2."),
    "finite": ("Finite values", "No NaN or infinity in the history or the weights (a gate)."),
}
# What the 3D viewer can colour layers by (static/js/arch3d.js HEALTH_METRICS), when the
# trial measured it per layer.
VIEWER_METRICS: dict[str, str] = {
    "gradient_norm": "Gradient norm",
    "dead_fraction": "Dead units",
    "saturated_fraction": "Saturation",
}
OUTCOME_LABELS = {
    "complete": "Complete",
    "pruned": "Pruned",
    "unhealthy": "Unhealthy",
    "cancelled": "Cancelled",
    "failed": "Failed",
}


def _study_or_404(user: Any, study_id: int) -> Study:
    try:
        return study_get(user=user, study_id=study_id)
    except NotFound as error:
        raise Http404(error.message) from error


def _trial_or_404(user: Any, study: Study, number: int) -> Trial:
    trial = trial_list(user=user).filter(study=study, number=number).first()
    if trial is None:
        raise Http404(f"Study {study.pk} has no trial {number}.")
    return trial


@login_required
def trial_detail(request: HttpRequest, study_id: int, number: int) -> HttpResponse:
    study = _study_or_404(request.user, study_id)
    trial = _trial_or_404(request.user, study, number)
    details = trial_details(trial)
    health = trial.health_metrics if isinstance(trial.health_metrics, dict) else {}
    summary = _summary(trial)
    context = {
        "nav": "studies",
        "study": study,
        "trial": trial,
        "summary": summary,
        "params": _params(trial),
        "health_rows": _health_rows(health),
        "health_facts": _health_facts(health),
        "layers": _layers(trial.architecture),
        "color_options": _color_options(health, details),
        "has_details": details is not None,
        "is_cnn": _is_cnn(trial.architecture),
        "log_entries": _log_entries(study, trial.number),
        "model_url": _model_url(trial),
        "data": _page_data(study, trial, details, summary),
        "cost_usd": trial_cost_usd(trial) if trial.executor == CLOUD_EXECUTOR else None,
    }
    return render(request, "trials/detail.html", context)


@login_required
def trial_compare(request: HttpRequest, study_id: int) -> HttpResponse:
    study = _study_or_404(request.user, study_id)
    trials = list(trial_list(user=request.user).filter(study=study).order_by("number"))
    wanted, errors = _wanted_numbers(request)
    chosen = _chosen_trials(request, study, trials, wanted, errors)
    context = {
        "nav": "studies",
        "study": study,
        "trials": [(trial, trial.number in wanted) for trial in trials],
        "errors": errors,
        "chosen": chosen,
        "rows": _compare_rows(chosen) if chosen else [],
        "data": [_compare_data(study, trial) for trial in chosen],
    }
    return render(request, "trials/compare.html", context)


def _chosen_trials(
    request: HttpRequest, study: Study, trials: list[Trial], wanted: list[int], errors: list[str]
) -> list[Trial]:
    """The ``wanted`` trials that exist, at most ``COMPARE_MAX``; what was wrong with the
    choice goes into ``errors``. Fewer than ``COMPARE_MIN`` is refused (none chosen and the
    form not sent: just the form)."""
    by_number = {trial.number: trial for trial in trials}
    missing = [number for number in wanted if number not in by_number]
    if missing:
        errors.append(f"Study {study.pk} has no trial {', '.join(map(str, missing))}.")
    chosen = [by_number[number] for number in wanted if number in by_number]
    if len(chosen) > COMPARE_MAX:
        errors.append(f"At most {COMPARE_MAX} trials can be compared at once; the first {COMPARE_MAX} are shown.")
        chosen = chosen[:COMPARE_MAX]
    asked = bool(wanted) or "trials" in request.GET or "compare" in request.GET
    if asked and len(chosen) < COMPARE_MIN:
        errors.append(f"Choose at least {COMPARE_MIN} trials to compare.")
        chosen = []
    return chosen


# --- the trial page ------------------------------------------------------------------------


def _duration_s(trial: Trial) -> float | None:
    if trial.datetime_start is None:
        return None
    end = trial.datetime_complete or (timezone.now() if trial.state == TrialState.RUNNING else None)
    return (end - trial.datetime_start).total_seconds() if end else None


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _status(trial: Trial) -> tuple[str, str]:
    """(css class, label): the outcome once known (it tells unhealthy and cancelled apart,
    which Optuna's state folds into FAIL), else the state."""
    if trial.outcome in OUTCOME_LABELS:
        return trial.outcome, OUTCOME_LABELS[trial.outcome]
    return trial.state, TrialState(trial.state).label


def _summary(trial: Trial) -> dict[str, Any]:
    status_class, status_label = _status(trial)
    progress = trial.progress if isinstance(trial.progress, dict) else {}
    return {
        "status_class": status_class,
        "status_label": status_label,
        "running": trial.state == TrialState.RUNNING,
        "accuracy": finite(trial.accuracy),
        "health_score": finite(trial.health_score),
        "total_score": finite(trial.total_score),
        "value": finite(trial.value),
        "duration": format_duration(_duration_s(trial)),
        "duration_s": _duration_s(trial),
        "epochs_done": trial.epochs.count(),
        "epoch": progress.get("epoch"),
        "epochs": progress.get("epochs"),
        "fraction": progress.get("fraction"),
    }


def _params(trial: Trial) -> list[tuple[str, str]]:
    """(name, value as text) in the order Optuna suggested them."""
    try:
        params = external_params(trial)
    except (ValueError, TypeError, KeyError) as error:  # a row Optuna cannot read: show the raw values
        logger.warning("trial %s: params not readable as distributions: %s", trial.pk, error)
        params = trial.params
    return [(name, param_text(value)) for name, value in params.items()]


def param_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _health_rows(health: dict[str, Any]) -> list[dict[str, Any]]:
    components = health.get("components") if isinstance(health.get("components"), dict) else {}
    rows = []
    for name, (label, meaning) in HEALTH_COMPONENTS.items():
        if name in components:
            rows.append({"name": name, "label": label, "meaning": meaning, "value": finite(components[name])})
    for name, value in components.items():  # a component added to the engine later
        if name not in HEALTH_COMPONENTS:
            rows.append({"name": name, "label": name.replace("_", " ").capitalize(), "meaning": "", "value": finite(value)})
    return rows


def _health_facts(health: dict[str, Any]) -> list[tuple[str, str]]:
    """The measurements behind the components, in words."""
    metrics = health.get("metrics") if isinstance(health.get("metrics"), dict) else {}
    facts: list[tuple[str, str]] = []
    if metrics.get("relu_units"):
        facts.append(("Dead ReLU units", f"{metrics.get('dead_units', 0)} of {metrics['relu_units']}"))
    if metrics.get("bounded_units"):
        facts.append(("Saturated tanh/sigmoid units", f"{metrics.get('saturated_units', 0)} of {metrics['bounded_units']}"))
    low, high = finite(metrics.get("grad_norm_min")), finite(metrics.get("grad_norm_max"))
    if low is not None and high is not None:
        facts.append(("Gradient norms", f"{low:.3g} to {high:.3g}"))
    for key, label in (("vanishing_layers", "Vanishing gradients"), ("exploding_layers", "Exploding gradients")):
        if metrics.get(key):
            facts.append((label, ", ".join(map(str, metrics[key]))))
    gap = finite(metrics.get("overfitting_gap"))
    if gap is not None:
        facts.append(("Train − validation accuracy", f"{gap:+.3f}"))
    if metrics.get("has_nan"):
        facts.append(("Non-finite values", "in the history" if metrics.get("nan_in_history") else "in the weights"))
    return facts


def _layers(architecture: Any) -> list[dict[str, Any]]:
    if not isinstance(architecture, dict) or not isinstance(architecture.get("layers"), list):
        return []
    return [layer for layer in architecture["layers"] if isinstance(layer, dict)]


def _is_cnn(architecture: Any) -> bool:
    """A convolutional model: only those get activation maps (workers/engine/health.py)."""
    if isinstance(architecture, dict) and architecture.get("family"):
        return architecture["family"] == "cnn"
    return any("conv" in str(layer.get("type", "")).lower() for layer in _layers(architecture))


def _color_options(health: dict[str, Any], details: dict[str, Any] | None) -> list[tuple[str, str]]:
    metrics = health.get("metrics") if isinstance(health.get("metrics"), dict) else {}
    measured = {
        "gradient_norm": bool((details or {}).get("gradient_norms"))
        or bool(metrics.get("vanishing_layers") or metrics.get("exploding_layers")),
        "dead_fraction": bool(metrics.get("dead_units_by_layer")),
        "saturated_fraction": bool(metrics.get("saturated_by_layer")),
    }
    return [("type", "Layer type")] + [(name, label) for name, label in VIEWER_METRICS.items() if measured[name]]


def _log_entries(study: Study, number: int) -> list[StudyLogEntry]:
    entries = StudyLogEntry.objects.filter(study=study, trial_number=number).order_by("-id")[:LOG_LINES_SHOWN]
    return list(reversed(entries))


def _model_url(trial: Trial) -> str | None:
    if not (trial.artifacts or {}).get("model"):
        return None
    return reverse("api-trial-model", kwargs={"trial_id": trial.pk})


def _details_for_page(details: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the charts draw from details.json (the confusion matrix comes from the API)."""
    if details is None:
        return None
    return finite(
        {
            "gradient_norms": details.get("gradient_norms") or {},
            "weight_histograms": details.get("weight_histograms") or {},
            "activation_maps": details.get("activation_maps") or [],
        }
    )


def _page_data(
    study: Study, trial: Trial, details: dict[str, Any] | None, summary: dict[str, Any]
) -> dict[str, Any]:
    return finite(
        {
            "study": {"id": study.pk, "name": study.name, "status": study.status},
            "trial": {
                "id": trial.pk,
                "number": trial.number,
                "state": trial.state,
                "outcome": trial.outcome,
                "running": summary["running"],
                "accuracy": summary["accuracy"],
                "health_score": summary["health_score"],
                "total_score": summary["total_score"],
                "epoch": summary["epoch"],
                "epochs": summary["epochs"],
                "fraction": summary["fraction"],
                "duration_s": summary["duration_s"],
            },
            "architecture": trial.architecture if isinstance(trial.architecture, dict) else {},
            "health_metrics": trial.health_metrics if isinstance(trial.health_metrics, dict) else {},
            "epochs": [
                {"epoch": e.epoch, "loss": e.loss, "accuracy": e.accuracy, "val_loss": e.val_loss, "val_accuracy": e.val_accuracy}
                for e in trial.epochs.all()
            ],
            "details": _details_for_page(details),
            "urls": {
                "trial": reverse("api-trial-detail", kwargs={"trial_id": trial.pk}),
                "curves": reverse("api-trial-plot", kwargs={"trial_id": trial.pk, "kind": "curves"}),
                "confusion": reverse("api-trial-plot", kwargs={"trial_id": trial.pk, "kind": "confusion"}),
                "model": _model_url(trial),
            },
        }
    )


# --- the compare page ------------------------------------------------------------------------


def _wanted_numbers(request: HttpRequest) -> tuple[list[int], list[str]]:
    """Trial numbers from ``?trials=1,2,3`` or the form's ``?trials=1&trials=2``, in order,
    without repeats; words that are not numbers are reported."""
    numbers: list[int] = []
    bad: list[str] = []
    for value in request.GET.getlist("trials"):
        for word in value.replace(" ", ",").split(","):
            if not word:
                continue
            if word.isdigit():
                if int(word) not in numbers:
                    numbers.append(int(word))
            else:
                bad.append(word)
    errors = [f"Not a trial number: {', '.join(bad[:5])}."] if bad else []
    return numbers, errors


def _compare_rows(trials: list[Trial]) -> list[dict[str, Any]]:
    """Sections of (label, one cell per trial) rows: params, metrics, health."""
    params = [_params(trial) for trial in trials]
    names: list[str] = []
    for pairs in params:
        names += [name for name, _ in pairs if name not in names]
    param_rows = [(name, [dict(pairs).get(name, "—") for pairs in params]) for name in names]
    summaries = [_summary(trial) for trial in trials]
    metric_rows = [
        ("Status", [s["status_label"] for s in summaries]),
        ("Accuracy", [_number(s["accuracy"]) for s in summaries]),
        ("Health score", [_number(s["health_score"]) for s in summaries]),
        ("Total score", [_number(s["total_score"]) for s in summaries]),
        ("Objective value", [_number(s["value"]) for s in summaries]),
        ("Parameters", [f"{t.param_count:,}" if t.param_count is not None else "—" for t in trials]),
        ("Epochs", [str(s["epochs_done"]) for s in summaries]),
        ("Duration", [s["duration"] for s in summaries]),
    ]
    components = [(t.health_metrics or {}).get("components") or {} for t in trials]
    health_rows = [
        (label, [_number(c.get(name)) for c in components])
        for name, (label, _) in HEALTH_COMPONENTS.items()
        if any(name in c for c in components)
    ]
    return [
        {"title": "Hyperparameters", "rows": param_rows},
        {"title": "Metrics", "rows": metric_rows},
        {"title": "Health", "rows": health_rows},
    ]


def _number(value: Any) -> str:
    value = finite(value)
    return "—" if value is None else f"{value:.4f}"


def _compare_data(study: Study, trial: Trial) -> dict[str, Any]:
    return finite(
        {
            "number": trial.number,
            "page": reverse("trials:detail", kwargs={"study_id": study.pk, "number": trial.number}),
            "architecture": trial.architecture if isinstance(trial.architecture, dict) else {},
            "health_metrics": trial.health_metrics if isinstance(trial.health_metrics, dict) else {},
        }
    )
