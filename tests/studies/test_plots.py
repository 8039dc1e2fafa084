"""studies.plots: every study plot from a real study on the ORM storage, the empty-figure
messages, training curves from epoch rows and the confusion matrix from details.json."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from studies import plots
from studies.models import Study
from studies.optuna_storage import storage_for_study
from studies.services import study_create
from trials.models import Trial, TrialEpoch

optuna.logging.set_verbosity(optuna.logging.ERROR)


def optuna_study_of(study: Study) -> optuna.Study:
    return optuna.load_study(study_name=study.optuna_name, storage=storage_for_study(study))


def run_trials(study: Study, n_complete: int = 5, n_pruned: int = 2) -> optuna.Study:
    """Trials with three parameters and per-epoch scores; some complete, some pruned."""
    optuna_study = optuna_study_of(study)
    for i in range(n_complete + n_pruned):
        trial = optuna_study.ask()
        rate = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        layers = trial.suggest_int("layers", 1, 4)
        optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
        score = 0.5 + 0.1 * layers - abs(math.log10(rate) + 2) / 10 + (0.05 if optimizer == "adam" else 0)
        for epoch in range(3):
            trial.report(score * (epoch + 1) / 3, step=epoch)
        if i < n_complete:
            optuna_study.tell(trial, score)
        else:
            optuna_study.tell(trial, state=TrialState.PRUNED)
    return optuna_study


def optimize(optuna_study: optuna.Study, objective: Any, n_trials: int) -> None:
    """ask/tell: Study.optimize would start a heartbeat thread writing to the test database."""
    for _ in range(n_trials):
        trial = optuna_study.ask()
        optuna_study.tell(trial, objective(trial))


@pytest.fixture
def study(workspace: Any, owner: Any) -> Study:
    return study_create(user=owner, workspace=workspace, name="plots")


@pytest.mark.parametrize("kind", list(plots.STUDY_PLOTS))
def test_each_study_plot_has_data(study: Study, kind: str) -> None:
    figure = plots.study_figure(run_trials(study), kind)
    assert figure["data"], figure.get("message")
    assert "layout" in figure and "message" not in figure
    json.dumps(figure, allow_nan=False)  # what the API sends must be strict JSON


def test_study_plot_loads_the_platform_study(study: Study) -> None:
    run_trials(study)
    figure = plots.study_plot(study, "history")
    assert len(figure["data"][0]["x"]) == 5  # the completed trials


@pytest.mark.parametrize("kind", list(plots.STUDY_PLOTS))
def test_empty_study_gives_an_empty_figure_with_a_message(study: Study, kind: str) -> None:
    figure = plots.study_figure(optuna_study_of(study), kind)
    assert figure["data"] == []
    assert figure["message"] == "The study has no trials yet."
    assert figure["layout"]["annotations"][0]["text"] == figure["message"]


def test_importance_needs_two_completed_trials(study: Study) -> None:
    figure = plots.study_figure(run_trials(study, n_complete=1, n_pruned=1), "importance")
    assert figure["data"] == []
    assert "at least 2 completed trials" in figure["message"]
    assert "1 completed of 2 trials" in figure["message"]


def test_contour_needs_two_parameters(study: Study) -> None:
    optuna_study = optuna_study_of(study)
    optimize(optuna_study, lambda t: t.suggest_float("x", 0, 1), 4)
    figure = plots.study_figure(optuna_study, "contour")
    assert figure["data"] == [] and "2 or more parameters" in figure["message"]
    assert "1 parameter." in figure["message"]


def test_contour_draws_at_most_a_few_parameters(study: Study) -> None:
    optuna_study = optuna_study_of(study)
    optimize(optuna_study, lambda t: sum(t.suggest_float(f"p{i}", 0, 1) for i in range(7)), 4)
    figure = plots.study_figure(optuna_study, "contour")
    axes = {key for key in figure["layout"] if key.startswith("xaxis")}
    assert len(axes) == plots.CONTOUR_MAX_PARAMS**2


def test_intermediate_needs_reported_values(study: Study) -> None:
    optuna_study = optuna_study_of(study)
    optimize(optuna_study, lambda t: t.suggest_float("x", 0, 1), 2)
    figure = plots.study_figure(optuna_study, "intermediate")
    assert figure["data"] == [] and "intermediate values" in figure["message"]


def test_only_pruned_trials_leave_history_empty_but_timeline_drawn(study: Study) -> None:
    optuna_study = run_trials(study, n_complete=0, n_pruned=2)
    history = plots.study_figure(optuna_study, "history")
    assert history["data"] == [] and "at least 1 completed trial" in history["message"]
    assert plots.study_figure(optuna_study, "timeline")["data"]
    assert plots.study_figure(optuna_study, "intermediate")["data"]


def test_multi_objective_study_is_drawn_for_its_first_objective(workspace: Any, owner: Any) -> None:
    study = study_create(user=owner, workspace=workspace, name="two", directions=["maximize", "minimize"])
    optuna_study = optuna_study_of(study)
    optimize(optuna_study, lambda t: (t.suggest_float("a", 0, 1), t.suggest_float("b", 0, 1)), 4)
    for kind in ("history", "parallel", "contour", "slice", "importance"):
        assert plots.study_figure(optuna_study, kind)["data"], kind


def test_infinite_values_become_null(study: Study) -> None:
    optuna_study = optuna_study_of(study)
    for value in (0.5, float("inf"), 0.7):
        trial = optuna_study.ask()
        trial.suggest_float("x", 0, 1)
        optuna_study.tell(trial, value)
    figure = plots.study_figure(optuna_study, "history")
    json.dumps(figure, allow_nan=False)


def test_optuna_refusal_is_a_message_not_an_error(study: Study, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ValueError("every trial has the same value")

    monkeypatch.setattr(plots.visualization, "plot_slice", refuse)
    figure = plots.study_figure(run_trials(study), "slice")
    assert figure["data"] == [] and "every trial has the same value" in figure["message"]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="history"):
        plots.study_figure(optuna.create_study(), "pie")


# --- trial plots ----------------------------------------------------------------------------

def _trial(study: Study) -> Trial:
    run_trials(study, n_complete=1, n_pruned=0)
    return Trial.objects.get(study=study, number=0)


def test_curves_from_epoch_rows(study: Study) -> None:
    trial = _trial(study)
    for epoch, (loss, accuracy) in enumerate([(1.0, 0.5), (0.6, 0.7), (0.4, 0.8)], start=1):
        TrialEpoch.objects.create(
            trial=trial, epoch=epoch, loss=loss, accuracy=accuracy, val_loss=loss + 0.1, val_accuracy=accuracy - 0.05
        )
    figure = plots.trial_plot(trial, "curves")
    by_name = {trace["name"]: trace for trace in figure["data"]}
    assert set(by_name) == {"loss", "val_loss", "accuracy", "val_accuracy"}
    assert by_name["loss"]["x"] == [1, 2, 3] and by_name["loss"]["y"] == [1.0, 0.6, 0.4]
    assert by_name["val_accuracy"]["y"] == pytest.approx([0.45, 0.65, 0.75])
    assert by_name["accuracy"]["xaxis"] == "x2"  # accuracy beside loss
    assert "message" not in figure


def test_curves_leave_out_metrics_never_recorded() -> None:
    class Row:
        def __init__(self, epoch: int, loss: float) -> None:
            self.epoch, self.loss = epoch, loss
            self.accuracy = self.val_loss = self.val_accuracy = None

    figure = plots.curves_figure([Row(2, 0.5), Row(1, float("nan"))])
    assert [trace["name"] for trace in figure["data"]] == ["loss"]
    assert figure["data"][0]["x"] == [1, 2] and figure["data"][0]["y"] == [None, 0.5]


def test_curves_of_a_trial_without_epochs(study: Study) -> None:
    figure = plots.trial_plot(_trial(study), "curves")
    assert figure["data"] == [] and "no finished epochs" in figure["message"]


def _write_details(trial: Trial, folder: Path, details: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "details.json"
    path.write_text(json.dumps(details))
    Trial.objects.filter(pk=trial.pk).update(artifacts={"details": str(path)})
    trial.refresh_from_db()


def test_confusion_from_details_json_with_class_names(workspace: Any, owner: Any, settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    study = study_create(user=owner, workspace=workspace, name="sentiment", dataset="imdb")
    trial = _trial(study)
    _write_details(trial, tmp_path / "studies" / str(study.pk) / "trials" / "0", {
        "history": [], "confusion_matrix": [[40, 10], [5, 45]],
    })
    figure = plots.trial_plot(trial, "confusion")
    (heatmap,) = figure["data"]
    assert heatmap["type"] == "heatmap"
    assert heatmap["z"] == [[40, 10], [5, 45]]
    assert heatmap["x"] == heatmap["y"] == ["negative", "positive"]
    assert "85.0%" in figure["layout"]["title"]["text"]


def test_confusion_labels_fall_back_to_indices(study: Study, settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    trial = _trial(study)  # digits: 10 names, but a 3x3 matrix
    _write_details(trial, tmp_path / "t", {"confusion_matrix": [[1, 0, 0], [0, 2, 0], [0, 1, 3]]})
    assert plots.trial_plot(trial, "confusion")["data"][0]["x"] == ["0", "1", "2"]


def test_confusion_without_details_is_a_message(study: Study) -> None:
    figure = plots.trial_plot(_trial(study), "confusion")
    assert figure["data"] == [] and "no confusion matrix" in figure["message"]


def test_details_outside_media_root_are_not_read(study: Study, settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    trial = _trial(study)
    _write_details(trial, tmp_path / "elsewhere", {"confusion_matrix": [[1, 0], [0, 1]]})
    assert "no confusion matrix" in plots.trial_plot(trial, "confusion")["message"]


def test_malformed_confusion_matrix_is_a_message() -> None:
    figure = plots.confusion_figure([[1, 2], [3]])
    assert figure["data"] == [] and "not a square matrix" in figure["message"]
