"""Plotly figures for a study and its trials, as figure JSON: ``{"data": [...], "layout": {...}}``.

Study plots come from ``optuna.visualization`` over the study's Optuna trials; trial plots
(training curves, confusion matrix) are drawn here with ``plotly.graph_objects`` from the
trial's epoch rows and its ``details.json``. A plot that cannot be drawn yet (too few trials,
too few parameters) is an empty figure with a ``"message"`` saying why, never an error.

The figure builders are pure: they take an Optuna ``Study`` or rows and return dicts.
``study_plot`` and ``trial_plot`` add the loading. Thread-safe; nothing is cached.
"""
from __future__ import annotations

import json
import logging
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import optuna
import plotly.graph_objects as go
from django.conf import settings
from optuna import visualization
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from workers.engine.catalog import DATASETS

if TYPE_CHECKING:
    from studies.models import Study
    from trials.models import Trial

logger = logging.getLogger(__name__)

Figure = dict[str, Any]

STUDY_PLOTS: dict[str, str] = {
    "history": "Optimization history",
    "importance": "Parameter importance",
    "parallel": "Parallel coordinates",
    "contour": "Contour",
    "slice": "Slice",
    "intermediate": "Intermediate values",
    "timeline": "Timeline",
}
TRIAL_PLOTS: dict[str, str] = {
    "curves": "Training curves",
    "confusion": "Confusion matrix",
}
# A contour is a grid of every pair of parameters: past a few parameters the figure grows
# to megabytes and is unreadable, so only the parameters most trials share are drawn.
CONTOUR_MAX_PARAMS = 4
_CURVES = (("loss", 1), ("val_loss", 1), ("accuracy", 2), ("val_accuracy", 2))


class EpochRow(Protocol):
    """What a training curve needs of an epoch (``trials.models.TrialEpoch``)."""

    epoch: int
    loss: float | None
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None


# --- study plots --------------------------------------------------------------------------

def study_figure(study: optuna.Study, kind: str) -> Figure:
    """The ``kind`` plot (a ``STUDY_PLOTS`` key) of an Optuna study. Multi-objective studies
    are drawn for their first objective (importance: for each objective)."""
    if kind not in STUDY_PLOTS:
        raise ValueError(f"unknown study plot {kind!r}; known: {', '.join(STUDY_PLOTS)}")
    trials = study.get_trials(deepcopy=False)
    reason = _why_empty(kind, trials)
    if reason:
        return empty_figure(reason, STUDY_PLOTS[kind])
    try:
        figure = _draw(study, kind, trials)
    except (ValueError, RuntimeError, ZeroDivisionError) as error:
        # Optuna refuses some studies (e.g. every trial with the same value); say so.
        logger.warning("plot %s of study %s failed: %s", kind, study.study_name, error)
        return empty_figure(f"{STUDY_PLOTS[kind]} cannot be drawn for this study: {error}", STUDY_PLOTS[kind])
    result = figure_json(figure)
    if not result["data"]:
        return empty_figure(_NEEDS[kind], STUDY_PLOTS[kind])
    return result


def study_plot(study: Study, kind: str) -> Figure:
    """``study_figure`` of a platform study, read through its Optuna storage."""
    from studies.optuna_storage import storage_for_study

    optuna_study = optuna.load_study(study_name=study.optuna_name, storage=storage_for_study(study))
    return study_figure(optuna_study, kind)


_NEEDS = {
    "history": "The optimization history needs at least 1 completed trial.",
    "importance": "Parameter importance needs at least 2 completed trials that share a parameter.",
    "parallel": "Parallel coordinates need at least 1 completed trial with parameters.",
    "contour": "A contour plot needs at least 2 completed trials with 2 or more parameters that vary.",
    "slice": "A slice plot needs at least 1 completed trial with parameters.",
    "intermediate": "No trial has reported intermediate values (per-epoch scores) yet.",
    "timeline": "The study has no trials yet.",
}


def _why_empty(kind: str, trials: Sequence[FrozenTrial]) -> str | None:
    if not trials:
        return "The study has no trials yet."
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    params = {name for t in complete for name in t.params}
    enough = {
        "history": len(complete) >= 1,
        "importance": len(complete) >= 2 and bool(params),
        "parallel": bool(params),
        "contour": len(complete) >= 2 and len(params) >= 2,
        "slice": bool(params),
        "intermediate": any(t.intermediate_values for t in trials),
        "timeline": True,
    }[kind]
    if enough:
        return None
    if kind in ("intermediate", "timeline"):
        return _NEEDS[kind]
    return f"{_NEEDS[kind]} The study has {len(complete)} completed of {len(trials)} trials" + (
        f" and {len(params)} parameter{'s' if len(params) != 1 else ''}." if complete else "."
    )


def _draw(study: optuna.Study, kind: str, trials: Sequence[FrozenTrial]) -> go.Figure:
    target: dict[str, Any] = {}
    if len(study.directions) > 1:
        target = {"target": _first_value, "target_name": "Objective 0"}
    if kind == "history":
        return visualization.plot_optimization_history(study, **target)
    if kind == "importance":
        return _importances(study)
    if kind == "parallel":
        return visualization.plot_parallel_coordinate(study, **target)
    if kind == "contour":
        return visualization.plot_contour(study, params=_contour_params(trials), **target)
    if kind == "slice":
        return visualization.plot_slice(study, **target)
    if kind == "intermediate":
        return visualization.plot_intermediate_values(study)
    return visualization.plot_timeline(study)


def _first_value(trial: FrozenTrial) -> float:
    return trial.values[0]


def _importances(study: optuna.Study) -> go.Figure:
    if len(study.directions) == 1:
        return visualization.plot_param_importances(study)
    # Optuna's default evaluator (PED-ANOVA) rates parameters for *low* target values and
    # warns whenever a target is given: turn a maximized objective around instead.
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*computes the importances of params to achieve low")
        return visualization.plot_param_importances(
            study, target=lambda trial: sign * trial.values[0], target_name="Objective 0"
        )


def _contour_params(trials: Sequence[FrozenTrial]) -> list[str]:
    """The parameters most completed trials share (and that vary), at most CONTOUR_MAX_PARAMS."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    seen = Counter(name for t in complete for name in t.params)
    varying = [name for name in seen if len({repr(t.params[name]) for t in complete if name in t.params}) > 1]
    chosen = sorted(varying or list(seen), key=lambda name: -seen[name])[:CONTOUR_MAX_PARAMS]
    return chosen if len(chosen) >= 2 else list(seen)[:CONTOUR_MAX_PARAMS]


# --- trial plots --------------------------------------------------------------------------

def curves_figure(epochs: Iterable[EpochRow], *, trial_number: int | None = None) -> Figure:
    """Loss and accuracy per epoch, training and validation, side by side."""
    rows = sorted(epochs, key=lambda row: row.epoch)
    title = TRIAL_PLOTS["curves"] + (f" of trial {trial_number}" if trial_number is not None else "")
    if not rows:
        return empty_figure("The trial has no finished epochs yet.", title)
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    x = [row.epoch for row in rows]
    for metric, column in _CURVES:
        y = [getattr(row, metric) for row in rows]
        if all(value is None for value in y):
            continue
        figure.add_trace(
            go.Scatter(x=x, y=y, name=metric, mode="lines+markers",
                       line={"dash": "dot" if metric.startswith("val_") else "solid"}),
            row=1, col=column,
        )
    if not figure.data:
        return empty_figure("The trial's epochs recorded no loss or accuracy.", title)
    figure.update_xaxes(title_text="Epoch", dtick=1 if len(rows) <= 20 else None)
    figure.update_layout(title={"text": title}, hovermode="x unified")
    return figure_json(figure)


def confusion_figure(matrix: Any, class_names: Sequence[str] = (), *, trial_number: int | None = None) -> Figure:
    """A heatmap of ``matrix[true][predicted]`` counts on the validation set."""
    title = TRIAL_PLOTS["confusion"] + (f" of trial {trial_number}" if trial_number is not None else "")
    if not _is_square_counts(matrix):
        return empty_figure("The trial's confusion matrix is missing or not a square matrix of counts.", title)
    n = len(matrix)
    labels = [str(name) for name in class_names] if len(class_names) == n else [str(i) for i in range(n)]
    total = sum(sum(row) for row in matrix)
    correct = sum(matrix[i][i] for i in range(n))
    heatmap = go.Heatmap(
        z=matrix, x=labels, y=labels, colorscale="Blues", colorbar={"title": {"text": "samples"}},
        hovertemplate="true %{y}<br>predicted %{x}<br>%{z} samples<extra></extra>",
    )
    if n <= 20:  # counts on the cells while they stay legible
        heatmap.update(text=matrix, texttemplate="%{text}")
    figure = go.Figure(heatmap)
    accuracy = f" (validation accuracy {correct / total:.1%})" if total else ""
    figure.update_layout(
        title={"text": title + accuracy},
        xaxis={"title": {"text": "Predicted"}, "type": "category"},
        yaxis={"title": {"text": "True"}, "type": "category", "autorange": "reversed"},
    )
    return figure_json(figure)


def _is_square_counts(matrix: Any) -> bool:
    if not isinstance(matrix, list) or not matrix:
        return False
    return all(
        isinstance(row, list) and len(row) == len(matrix)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
        for row in matrix
    )


def trial_plot(trial: Trial, kind: str) -> Figure:
    """The ``kind`` plot (a ``TRIAL_PLOTS`` key) of a platform trial."""
    if kind not in TRIAL_PLOTS:
        raise ValueError(f"unknown trial plot {kind!r}; known: {', '.join(TRIAL_PLOTS)}")
    if kind == "curves":
        return curves_figure(trial.epochs.all(), trial_number=trial.number)
    details = trial_details(trial)
    if details is None or "confusion_matrix" not in details:
        return empty_figure(
            "The trial has no confusion matrix: it is written when a trial finishes training.",
            f"{TRIAL_PLOTS['confusion']} of trial {trial.number}",
        )
    return confusion_figure(details["confusion_matrix"], class_names(trial.study), trial_number=trial.number)


def trial_details(trial: Trial) -> dict[str, Any] | None:
    """The trial's details.json (history, confusion matrix, ...), or None when it has none.
    Only files under MEDIA_ROOT are read: the path comes from a worker, which may be remote."""
    location = (trial.artifacts or {}).get("details")
    if not isinstance(location, str) or not location:
        return None
    path = Path(location).resolve()
    if not path.is_relative_to(Path(settings.MEDIA_ROOT).resolve()):
        logger.warning("trial %s: details path outside MEDIA_ROOT ignored", trial.pk)
        return None
    try:
        details = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("trial %s: cannot read its details.json: %s", trial.pk, error)
        return None
    return details if isinstance(details, dict) else None


def class_names(study: Study) -> list[str]:
    """Label names of the study's data set: the catalog's, or its upload's summary."""
    if study.dataset in DATASETS:
        return list(DATASETS[study.dataset].class_names)
    from studies.models import DatasetUpload

    upload_id = (study.dataset_options or {}).get("upload_id")
    if not isinstance(upload_id, int):
        return []
    upload = DatasetUpload.objects.filter(pk=upload_id, workspace_id=study.workspace_id).first()
    return list(upload.summary.get("class_names", [])) if upload is not None else []


# --- figures ------------------------------------------------------------------------------

def figure_json(figure: go.Figure) -> Figure:
    """Plotly's own JSON of ``figure`` (NaN and infinities become null), as a dict."""
    result: Figure = json.loads(figure.to_json())
    return result


def empty_figure(message: str, title: str = "") -> Figure:
    """A figure with no data that shows ``message``; the message is also under "message"."""
    figure = go.Figure()
    figure.update_layout(
        title={"text": title},
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[{"text": message, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}],
    )
    return {**figure_json(figure), "message": message}

