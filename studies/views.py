"""The studies pages (docs/portal.md): the list, the new-study form and the live study page.

Views only translate HTTP: reads through ``studies.selectors`` and ``trials.selectors``
(scoped by the user: another workspace's study is a 404), writes through
``studies.services`` (which check roles). The study page is rendered from the database
with the true current state, so it is right with JavaScript off; ``static/js/study.js``
then keeps it live. The small formatting helpers here are mirrored in study.js: keep the
two in step so a live update does not change how a value reads.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.errors import ApplicationError, NotFound
from accounts.models import Role
from accounts.portal import current_workspace
from accounts.services import role_of
from studies.forms import StudyForm
from studies.cost import study_cost
from studies.models import ACTIVE_STATUSES, Executor, Mode, Status, Study
from studies.plots import STUDY_PLOTS
from studies.progress import compute_progress
from studies.selectors import study_get, study_log_list, study_search
from studies.services import study_cancel, study_create, study_start
from studies.uploads import upload_list
from trials.models import Trial
from trials.selectors import trial_best, trial_search

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE = 50
LOG_LINES = 200  # the newest lines rendered with the page; the rest through the API
PLOT_TABS = (
    ("main", "Overview", ("history", "importance", "parallel")),
    ("more", "More plots", ("contour", "slice", "intermediate", "timeline")),
)
MODE_SCORE_LABELS = {Mode.SIMPLE: "accuracy", Mode.HEALTH: "0.7·accuracy + 0.3·health"}
HEALTH_COMPONENTS = (
    ("gradients", "Gradient norms"),
    ("dead_units", "Dead filters and units"),
    ("saturation", "Saturated units"),
    ("loss_stability", "Loss stability"),
    ("overfitting", "Overfitting"),
    ("finite", "Finite weights and losses"),
)
HEALTH_METRICS = (
    ("grad_norm_mean", "Mean gradient norm", "number"),
    ("dead_fraction", "Dead share of ReLU units", "percent"),
    ("saturated_fraction", "Saturated share of bounded units", "percent"),
    ("loss_upward_share", "Share of loss movement upwards", "percent"),
    ("overfitting_gap", "Train − validation accuracy", "percent"),
)
RECURRENT_TYPES = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")
NO_VALUE = "—"


# --- formatting (mirrored in static/js/study.js) ------------------------------------------


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return NO_VALUE
    seconds = int(max(0.0, seconds) + 0.5)  # half up, as Math.round in study.js
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def percent_text(value: float | None) -> str:
    return NO_VALUE if value is None else f"{value * 100:.1f}%"


def score_text(value: float | None) -> str:
    return NO_VALUE if value is None else f"{value:.4f}"


def architecture_summary(architecture: dict[str, Any] | None, param_count: int | None = None) -> list[tuple[str, str]]:
    """(label, text) rows describing a model: conv layers with filters and kernel sizes,
    recurrent and dense layers with units, activations, parameter count."""
    layers = (architecture or {}).get("layers") or []
    if not layers:
        return []
    conv = [layer for layer in layers if str(layer.get("type", "")).startswith("Conv")]
    recurrent = [layer for layer in layers if layer.get("type") in RECURRENT_TYPES]
    dense = [layer for layer in layers if layer.get("type") == "Dense"]
    activations: list[str] = []
    for layer in layers:
        if layer.get("activation") not in (None, "linear") and layer["activation"] not in activations:
            activations.append(layer["activation"])
    rows: list[tuple[str, str]] = []
    if conv or not recurrent:
        rows.append(("Conv layers", str(len(conv))))
        if conv:
            rows.append(("Filters", ", ".join(str(layer.get("filters")) for layer in conv)))
            rows.append(("Kernel sizes", ", ".join("×".join(map(str, layer.get("kernel_size") or [])) or "?" for layer in conv)))
    if recurrent:
        rows.append(("Recurrent layers", str(len(recurrent))))
        rows.append(("Recurrent units", ", ".join(str(layer.get("units")) for layer in recurrent)))
    rows.append(("Dense layers", str(len(dense))))
    if dense:
        rows.append(("Dense units", ", ".join(str(layer.get("units")) for layer in dense)))
    rows.append(("Activations", ", ".join(activations) or NO_VALUE))
    total = (architecture or {}).get("total_params", param_count)
    rows.append(("Parameters", f"{total:,}" if isinstance(total, int) else NO_VALUE))
    return rows


def trial_status(trial: Trial) -> str:
    """What the card's badge says: how training ended (complete, pruned, unhealthy,
    cancelled, failed), else Optuna's state (running, waiting)."""
    return trial.outcome or trial.state.lower()


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def trial_card(trial: Trial, study: Study) -> dict[str, Any]:
    progress = trial.progress or {}
    return {
        "id": trial.pk,
        "number": trial.number,
        "status": trial_status(trial),
        "accuracy": percent_text(trial.accuracy),
        "health": score_text(trial.health_score),
        "total": score_text(trial.total_score),
        "architecture": architecture_summary(trial.architecture, trial.param_count),
        "duration": duration_text(_seconds(trial.datetime_start, trial.datetime_complete)),
        "epoch": f"epoch {progress['epoch']} of {progress['epochs']}" if trial.state == "RUNNING" and progress.get("epochs") else "",
        "page": f"/studies/{study.pk}/trials/{trial.number}/",
    }


def tiles(progress: dict[str, Any], study: Study) -> dict[str, str]:
    best_score = progress.get("best_total_score")
    if best_score is None:
        best_score = progress.get("best_value")
    finished = study.status not in ACTIVE_STATUSES
    return {
        "trials": f"{progress.get('finished', 0)} / {progress.get('n_trials', study.n_trials)}",
        "best_accuracy": percent_text(progress.get("best_accuracy")),
        "best_score": score_text(best_score),
        "score_mode": MODE_SCORE_LABELS.get(progress.get("mode", study.mode), study.mode),
        "average": duration_text(progress.get("average_trial_s")),
        "eta": NO_VALUE if finished else duration_text(progress.get("eta_s")),
    }


def running_bars(progress: dict[str, Any]) -> list[dict[str, Any]]:
    bars = []
    for running in progress.get("running_trials") or []:
        fraction = running.get("fraction") or 0.0
        epochs = running.get("epochs")
        bars.append({
            "number": running["number"],
            "text": f"epoch {running.get('epoch')} of {epochs}" if epochs else "starting",
            "fraction": fraction,
            "percent": f"{fraction * 100:.0f}%",
        })
    return bars


def health_rows(health: dict[str, Any] | None) -> list[tuple[str, str]]:
    health = health or {}
    components = health.get("components") or {}
    metrics = health.get("metrics") or {}
    rows = [(label, score_text(components.get(key))) for key, label in HEALTH_COMPONENTS if key in components]
    for key, label, kind in HEALTH_METRICS:
        if metrics.get(key) is not None:
            rows.append((label, percent_text(metrics[key]) if kind == "percent" else f"{metrics[key]:.3g}"))
    return rows


# --- pages ---------------------------------------------------------------------------------


def _study_or_404(request: HttpRequest, study_id: int) -> Study:
    try:
        return study_get(user=request.user, study_id=study_id)
    except NotFound:
        raise Http404("No such study in a workspace of yours.") from None


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    """The current workspace's studies, newest first."""
    workspace = current_workspace(request)
    studies = study_search(user=request.user, workspace_slug=workspace.slug) if workspace else Study.objects.none()
    page = Paginator(studies, LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = []
    for study in page:
        progress = study.progress or {}
        best = progress.get("best_total_score", progress.get("best_value"))
        rows.append({"study": study, "finished": progress.get("finished", 0), "best": score_text(best)})
    return render(request, "studies/list.html", {"nav": "studies", "page": page, "rows": rows, "workspace": workspace})


@login_required
def study_new(request: HttpRequest) -> HttpResponse:
    """The new-study form: creates a draft (``study_create``), and starts it
    (``study_start``) with "Create and start"; both or neither."""
    workspace = current_workspace(request)
    if workspace is None:
        raise Http404("You belong to no workspace.")
    uploads = list(upload_list(user=request.user, workspace=workspace).order_by("name"))
    form = StudyForm(request.POST or None, uploads=uploads)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                study = study_create(user=request.user, workspace=workspace, **form.service_kwargs())
                if form.start_requested:
                    study = study_start(user=request.user, study=study)
        except ApplicationError as error:
            form.add_service_error(error)
        else:
            started = " and queued" if form.start_requested else " as a draft"
            messages.success(request, f"Study {study.name!r} created{started}.")
            return redirect("studies:detail", study_id=study.pk)
    role = role_of(user=request.user, workspace=workspace)
    return render(request, "studies/new.html", {
        "nav": "new",
        "form": form,
        "workspace": workspace,
        "can_create": role is not None and role.at_least(Role.MEMBER),
    })


@login_required
def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    """The live study page, rendered with the current state (a fresh snapshot)."""
    study = _study_or_404(request, study_id)
    progress = compute_progress(study)
    trials = list(trial_search(user=request.user, study_id=study.pk).defer(
        "health_metrics", "intermediate_values_json", "user_attrs_json", "system_attrs_json"
    ))
    best = trial_best(user=request.user, study_id=study.pk)
    role = role_of(user=request.user, workspace=study.workspace) if study.workspace else None
    entries = list(study_log_list(user=request.user, study_id=study.pk).order_by("-id")[:LOG_LINES])[::-1]
    page_data = {
        "study_id": study.pk,
        "status": study.status,
        "n_trials": study.n_trials,
        "mode": study.mode,
        "progress": progress,
        "best_trial": {"number": best.number, "id": best.pk} if best else None,
        "trial_ids": {str(trial.number): trial.pk for trial in trials},
        "last_log_id": entries[-1].pk if entries else 0,
    }
    return render(request, "studies/detail.html", {
        "nav": "studies",
        "study": study,
        "progress": progress,
        "tiles": tiles(progress, study),
        "running": running_bars(progress),
        "cards": [trial_card(trial, study) for trial in trials],
        "best": best,
        "best_architecture": architecture_summary(best.architecture, best.param_count) if best else [],
        "best_health": health_rows(best.health_metrics) if best else [],
        "best_has_model": bool(best and (best.artifacts or {}).get("model")),
        "can_act": role is not None and role.at_least(Role.MEMBER),
        "can_start": study.status == Status.DRAFT,
        "can_cancel": study.status in (Status.QUEUED, Status.RUNNING),
        "log_entries": entries,
        "plot_tabs": [(key, title, [(kind, STUDY_PLOTS[kind]) for kind in kinds]) for key, title, kinds in PLOT_TABS],
        "page_data": page_data,
        "cost": study_cost(study) if study.executor == Executor.RUNPOD else None,
    })


def _act(request: HttpRequest, study_id: int, action: Any, done: str) -> HttpResponse:
    study = _study_or_404(request, study_id)
    try:
        action(user=request.user, study=study)
    except NotFound:
        raise Http404("No such study in a workspace of yours.") from None
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, done.format(name=study.name))
    return redirect("studies:detail", study_id=study.pk)


@login_required
@require_POST
def study_start_view(request: HttpRequest, study_id: int) -> HttpResponse:
    return _act(request, study_id, study_start, "Study {name!r} queued: trials start as workers take them.")


@login_required
@require_POST
def study_cancel_view(request: HttpRequest, study_id: int) -> HttpResponse:
    def cancel(*, user: Any, study: Study) -> Study:
        return study_cancel(user=user, study=study, reason=request.POST.get("reason", "").strip()[:2000])

    return _act(request, study_id, cancel, "Study {name!r} cancelled: running trials stop, finished ones stay.")
