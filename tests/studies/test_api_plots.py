"""GET /api/v1/studies/<id>/plots/<kind>/ and /api/v1/trials/<id>/plots/<kind>/: figure JSON
for viewers, 404 for outsiders, 400 for an unknown kind, 200 with a message when empty."""
from __future__ import annotations

import json
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


@pytest.fixture
def study(workspace: Any, owner: Any) -> Study:
    study = study_create(user=owner, workspace=workspace, name="plots")
    optuna_study = optuna.load_study(study_name=study.optuna_name, storage=storage_for_study(study))
    for i in range(6):
        trial = optuna_study.ask()
        x = trial.suggest_float("x", -3, 3)
        units = trial.suggest_int("units", 8, 64)
        trial.report(x * x, step=0)
        trial.report(x * x / 2, step=1)
        if i == 5:
            optuna_study.tell(trial, state=TrialState.PRUNED)
        else:
            optuna_study.tell(trial, -(x * x) + units / 64)
    return study


@pytest.fixture
def trial(study: Study) -> Trial:
    trial = Trial.objects.get(study=study, number=0)
    TrialEpoch.objects.create(trial=trial, epoch=1, loss=0.9, accuracy=0.6, val_loss=1.0, val_accuracy=0.55)
    TrialEpoch.objects.create(trial=trial, epoch=2, loss=0.5, accuracy=0.8, val_loss=0.6, val_accuracy=0.75)
    return trial


def study_url(study: Study, kind: str) -> str:
    return f"/api/v1/studies/{study.pk}/plots/{kind}/"


def trial_url(trial: Trial, kind: str) -> str:
    return f"/api/v1/trials/{trial.pk}/plots/{kind}/"


@pytest.mark.parametrize("kind", list(plots.STUDY_PLOTS))
def test_viewer_gets_each_study_plot(api_client: Any, viewer: Any, study: Study, kind: str) -> None:
    response = api_client(viewer).get(study_url(study, kind))
    assert response.status_code == 200, response.content
    figure = response.json()
    assert figure["data"] and "layout" in figure and "message" not in figure


def test_empty_study_answers_200_with_a_message(api_client: Any, viewer: Any, workspace: Any, owner: Any) -> None:
    empty = study_create(user=owner, workspace=workspace, name="empty")
    for kind in plots.STUDY_PLOTS:
        response = api_client(viewer).get(study_url(empty, kind))
        assert response.status_code == 200
        assert response.json()["data"] == [] and response.json()["message"] == "The study has no trials yet."


def test_unknown_study_plot_kind_is_a_400_naming_the_kinds(api_client: Any, viewer: Any, study: Study) -> None:
    response = api_client(viewer).get(study_url(study, "pie"))
    assert response.status_code == 400
    (message,) = response.json()["kind"]
    assert "'pie'" in message and "history, importance, parallel, contour, slice, intermediate, timeline" in message


def test_trial_curves(api_client: Any, viewer: Any, trial: Trial) -> None:
    response = api_client(viewer).get(trial_url(trial, "curves"))
    assert response.status_code == 200
    names = [trace["name"] for trace in response.json()["data"]]
    assert names == ["loss", "val_loss", "accuracy", "val_accuracy"]
    assert response.json()["data"][0]["y"] == [0.9, 0.5]


def test_trial_confusion_from_details(api_client: Any, viewer: Any, trial: Trial, settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    details = tmp_path / "studies" / str(trial.study_id) / "trials" / "0" / "details.json"
    details.parent.mkdir(parents=True)
    matrix = [[5, 1] + [0] * 8] + [[0] * 10 for _ in range(9)]
    details.write_text(json.dumps({"history": [], "confusion_matrix": matrix}))
    Trial.objects.filter(pk=trial.pk).update(artifacts={"details": str(details)})
    response = api_client(viewer).get(trial_url(trial, "confusion"))
    assert response.status_code == 200
    (heatmap,) = response.json()["data"]
    assert heatmap["z"] == matrix and heatmap["x"][:3] == ["0", "1", "2"]
    assert str(tmp_path) not in response.content.decode()


def test_trial_confusion_before_training_ends(api_client: Any, viewer: Any, trial: Trial) -> None:
    response = api_client(viewer).get(trial_url(trial, "confusion"))
    assert response.status_code == 200 and "no confusion matrix" in response.json()["message"]


def test_unknown_trial_plot_kind_is_a_400(api_client: Any, viewer: Any, trial: Trial) -> None:
    response = api_client(viewer).get(trial_url(trial, "history"))
    assert response.status_code == 400
    assert "curves, confusion" in response.json()["kind"][0]


def test_outsider_gets_404_for_every_plot(api_client: Any, outsider: Any, study: Study, trial: Trial) -> None:
    client = api_client(outsider)
    for url in (study_url(study, "history"), study_url(study, "pie"), trial_url(trial, "curves"), trial_url(trial, "x")):
        assert client.get(url).status_code == 404, url


def test_missing_objects_are_404(api_client: Any, viewer: Any) -> None:
    client = api_client(viewer)
    assert client.get("/api/v1/studies/999999/plots/history/").status_code == 404
    assert client.get("/api/v1/trials/999999/plots/curves/").status_code == 404


def test_anonymous_is_refused(api_client: Any, study: Study, trial: Trial) -> None:
    assert api_client(None).get(study_url(study, "history")).status_code in (401, 403)
    assert api_client(None).get(trial_url(trial, "curves")).status_code in (401, 403)


def test_plots_are_read_only(api_client: Any, member: Any, study: Study) -> None:
    assert api_client(member).post(study_url(study, "history"), {}).status_code == 405
