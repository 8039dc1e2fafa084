"""The trial pages: /studies/<id>/trials/<number>/ (the trial with its 3D viewer, charts and
log) and /studies/<id>/compare/?trials=... (trials side by side). Server-rendered state,
the page data handed to JavaScript (no server paths, strict JSON), missing details said
plainly, and another workspace's study a 404."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from django.test import Client

from studies.models import LogLevel, Study, StudyLogEntry
from studies.optuna_storage import DjangoStorage
from studies.services import study_create
from trials.models import Trial, TrialEpoch

CNN = {
    "family": "cnn",
    "total_params": 4298,
    "layers": [
        {"index": 0, "name": "input", "type": "InputLayer", "output_shape": [None, 8, 8, 1], "units": None,
         "filters": None, "kernel_size": None, "activation": None, "params": 0},
        {"index": 1, "name": "conv_1", "type": "Conv2D", "output_shape": [None, 8, 8, 16], "units": None,
         "filters": 16, "kernel_size": [3, 3], "activation": "linear", "params": 160},
        {"index": 2, "name": "act_1", "type": "Activation", "output_shape": [None, 8, 8, 16], "units": None,
         "filters": None, "kernel_size": None, "activation": "relu", "params": 0},
        {"index": 3, "name": "pool_1", "type": "MaxPooling2D", "output_shape": [None, 4, 4, 16], "units": None,
         "filters": None, "kernel_size": None, "activation": None, "params": 0},
        {"index": 4, "name": "flatten", "type": "Flatten", "output_shape": [None, 256], "units": None,
         "filters": None, "kernel_size": None, "activation": None, "params": 0},
        {"index": 5, "name": "output", "type": "Dense", "output_shape": [None, 10], "units": 10,
         "filters": None, "kernel_size": None, "activation": "softmax", "params": 2570},
    ],
}
HEALTH = {
    "score": 0.82,
    "components": {"gradients": 1.0, "dead_units": 0.75, "saturation": 1.0, "loss_stability": 0.9,
                   "overfitting": 0.5, "finite": 1.0},
    "metrics": {"dead_units": 4, "relu_units": 16, "dead_units_by_layer": {"act_1": 0.25},
                "saturated_by_layer": {}, "vanishing_layers": [], "exploding_layers": [],
                "grad_norm_min": 0.01, "grad_norm_max": 0.2, "overfitting_gap": 0.1},
}
DETAILS = {
    "history": [{"loss": 0.8, "accuracy": 0.7, "val_loss": 0.7, "val_accuracy": 0.75}],
    "confusion_matrix": [[5, 1], [0, 4]],
    "gradient_norms": {"conv_1": 0.1, "output": 0.07},
    "weight_histograms": {"conv_1": {"weights": {"bins": [-0.2, 0.0, 0.2], "counts": [70, 74], "nonfinite": 0},
                                      "bias": {"bins": [-1e-4, 0.0, 1e-4], "counts": [8, 8], "nonfinite": 0}}},
    "activation_maps": [{"layer": "act_1", "image_index": 0, "channels": [[[0.0, 1.5], [0.25, 0.0]]]}],
}


def page_data(response: Any, element_id: str) -> Any:
    """The json_script payload, parsed strictly (NaN or Infinity would fail in a browser)."""
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', response.content.decode(), re.S)
    assert match, f"no #{element_id} on the page"

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the page data")

    return json.loads(match.group(1), parse_constant=refuse)


def client_for(user: Any) -> Client:
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


@pytest.fixture
def media(tmp_path: Path, settings: Any) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def study(workspace: Any, member: Any) -> Study:
    return study_create(user=member, workspace=workspace, name="digits cnn", n_trials=5)


@pytest.fixture
def optuna_study(study: Study) -> optuna.Study:
    return optuna.load_study(study_name=study.optuna_name, storage=DjangoStorage())


def finished_trial(optuna_study: optuna.Study, media: Path, *, value: float, with_details: bool = True) -> Trial:
    """A complete trial as the workers leave it: scores, architecture, epochs, details.json
    and a kept model under MEDIA_ROOT."""
    trial = optuna_study.ask()
    trial.suggest_categorical("optimizer", ["adam", "sgd"])
    trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
    trial.suggest_int("conv_blocks", 1, 3)
    optuna_study.tell(trial, value)
    row = Trial.objects.get(pk=trial._trial_id)
    folder = media / "studies" / str(row.study_id) / "trials" / str(row.number)
    folder.mkdir(parents=True)
    artifacts = {"model": str(folder / "model.keras")}
    (folder / "model.keras").write_bytes(b"keras zip")
    if with_details:
        (folder / "details.json").write_text(json.dumps(DETAILS))
        artifacts["details"] = str(folder / "details.json")
    Trial.objects.filter(pk=row.pk).update(
        accuracy=value, health_score=0.82, total_score=value, health_metrics=HEALTH, architecture=CNN,
        param_count=2730, outcome="complete", artifacts=artifacts, executor="local", worker="host:1",
    )
    TrialEpoch.objects.create(trial=row, epoch=1, loss=0.8, accuracy=0.7, val_loss=float("nan"), val_accuracy=0.75, seconds=1.0)
    return Trial.objects.get(pk=row.pk)


@pytest.fixture
def finished(optuna_study: optuna.Study, media: Path) -> Trial:
    return finished_trial(optuna_study, media, value=0.91)


@pytest.fixture
def running(optuna_study: optuna.Study, finished: Trial) -> Trial:
    trial = optuna_study.ask()
    trial.suggest_categorical("optimizer", ["adam", "sgd"])
    Trial.objects.filter(pk=trial._trial_id).update(progress={"epoch": 2, "epochs": 5, "fraction": 0.5})
    return Trial.objects.get(pk=trial._trial_id)


def detail_url(study: Study, number: int) -> str:
    return f"/studies/{study.pk}/trials/{number}/"


def compare_url(study: Study, query: str = "") -> str:
    return f"/studies/{study.pk}/compare/{query}"


# --- the trial page ------------------------------------------------------------------------------


def test_trial_page_shows_state_params_health_and_embeds_the_architecture(
    viewer: Any, study: Study, finished: Trial, media: Path
) -> None:
    response = client_for(viewer).get(detail_url(study, finished.number))

    assert response.status_code == 200
    html = response.content.decode()
    for element_id in ("architecture-viewer", "color-by", "save-png", "curves", "confusion", "gradient-flow",
                       "weights", "activations", "params-table", "health-table", "layers-table"):
        assert f'id="{element_id}"' in html, element_id
    assert 'class="status complete">Complete<' in html
    assert ">0.9100<" in html and ">0.8200<" in html  # accuracy, health score tiles
    assert "<th scope=\"row\">optimizer</th>" in html and "learning_rate" in html
    assert "Dead units" in html and "4 of 16" in html
    assert f'href="/api/v1/trials/{finished.pk}/model/"' in html
    assert '<label for="color-by">' in html
    assert '<option value="gradient_norm">' in html and '<option value="dead_fraction">' in html
    assert '<option value="saturated_fraction">' not in html  # not measured: no option

    data = page_data(response, "trial-data")
    assert data["architecture"] == CNN
    assert data["health_metrics"]["components"]["dead_units"] == 0.75
    assert data["trial"] == {**data["trial"], "id": finished.pk, "number": finished.number, "running": False}
    assert data["details"]["gradient_norms"] == DETAILS["gradient_norms"]
    assert data["details"]["activation_maps"][0]["channels"] == DETAILS["activation_maps"][0]["channels"]
    assert data["epochs"][0]["val_loss"] is None  # NaN became null
    assert data["urls"]["curves"] == f"/api/v1/trials/{finished.pk}/plots/curves/"
    assert data["urls"]["confusion"] == f"/api/v1/trials/{finished.pk}/plots/confusion/"


def test_trial_page_shows_no_server_paths(viewer: Any, study: Study, finished: Trial, media: Path) -> None:
    html = client_for(viewer).get(detail_url(study, finished.number)).content.decode()

    assert str(media) not in html
    assert "details.json" not in html and "model.keras" not in html
    assert "artifacts" not in json.dumps(page_data_from_html(html))


def page_data_from_html(html: str) -> Any:
    match = re.search(r'<script id="trial-data" type="application/json">(.*?)</script>', html, re.S)
    assert match
    return json.loads(match.group(1))


def test_missing_details_are_said_plainly(member: Any, study: Study, optuna_study: optuna.Study, media: Path) -> None:
    trial = finished_trial(optuna_study, media, value=0.8, with_details=False)

    response = client_for(member).get(detail_url(study, trial.number))

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("No details were saved for this trial") == 3  # gradients, weights, activations
    assert page_data(response, "trial-data")["details"] is None
    assert '<option value="gradient_norm">' not in html  # no norms, no flagged layers
    assert 'id="weights-layer"' not in html


@pytest.mark.parametrize("where", ["gone", "outside"])
def test_unreadable_details_count_as_missing(
    viewer: Any, study: Study, finished: Trial, media: Path, tmp_path: Path, where: str
) -> None:
    outside = tmp_path / "elsewhere" / "details.json"
    outside.parent.mkdir()
    outside.write_text(json.dumps(DETAILS))
    location = str(media / "nope" / "details.json") if where == "gone" else str(outside)
    Trial.objects.filter(pk=finished.pk).update(artifacts={"details": location})

    response = client_for(viewer).get(detail_url(study, finished.number))

    assert response.status_code == 200
    assert page_data(response, "trial-data")["details"] is None
    assert "No details were saved for this trial" in response.content.decode()
    assert str(tmp_path) not in response.content.decode()


def test_running_trial_is_shown_live_without_details(viewer: Any, study: Study, running: Trial) -> None:
    response = client_for(viewer).get(detail_url(study, running.number))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="status RUNNING">Running<' in html
    assert 'id="trial-progress"' in html and "Training epoch 2 of 5" in html
    data = page_data(response, "trial-data")
    assert data["trial"]["running"] is True and data["trial"]["epoch"] == 2
    assert data["architecture"] == {} and data["details"] is None
    assert "No architecture recorded for this trial yet" in html
    assert f'href="/api/v1/trials/{running.pk}/model/"' not in html


def test_cnn_only_activation_maps_say_why_for_an_lstm(viewer: Any, study: Study, finished: Trial) -> None:
    Trial.objects.filter(pk=finished.pk).update(architecture={**CNN, "family": "lstm"})

    html = client_for(viewer).get(detail_url(study, finished.number)).content.decode()

    assert "Activation maps are drawn for convolutional models only" in html
    assert 'id="activation-image"' not in html


def test_trial_page_lists_only_this_trials_log_lines(viewer: Any, study: Study, finished: Trial) -> None:
    StudyLogEntry.objects.create(study=study, trial_number=finished.number, message="Trial 0 finished: 0.91")
    StudyLogEntry.objects.create(study=study, trial_number=finished.number, level=LogLevel.ERROR,
                                 message="warned <b>", details="Traceback (most recent call last)")
    StudyLogEntry.objects.create(study=study, trial_number=finished.number + 1, message="another trial's line")
    StudyLogEntry.objects.create(study=study, message="Study started")

    html = client_for(viewer).get(detail_url(study, finished.number)).content.decode()

    assert "Trial 0 finished: 0.91" in html and "Traceback (most recent call last)" in html
    assert "warned &lt;b&gt;" in html
    assert "another trial&#x27;s line" not in html and "Study started" not in html


def test_unknown_trial_number_is_404(viewer: Any, study: Study, finished: Trial) -> None:
    assert client_for(viewer).get(detail_url(study, 99)).status_code == 404


def test_outsider_gets_404_on_the_trial_page(outsider: Any, study: Study, finished: Trial) -> None:
    assert client_for(outsider).get(detail_url(study, finished.number)).status_code == 404


def test_trial_page_needs_a_login(study: Study, finished: Trial) -> None:
    response = Client(HTTP_HOST="localhost").get(detail_url(study, finished.number))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


# --- the compare page ----------------------------------------------------------------------------


@pytest.fixture
def three(optuna_study: optuna.Study, media: Path, finished: Trial) -> list[Trial]:
    second = finished_trial(optuna_study, media, value=0.85)
    Trial.objects.filter(pk=second.pk).update(architecture={"layers": [{"name": "d", "type": "Dense", "units": 3}]})
    third = finished_trial(optuna_study, media, value=0.5)
    return [finished, Trial.objects.get(pk=second.pk), third]


@pytest.mark.parametrize("query", ["?trials=0,1", "?trials=0&trials=1", "?trials=1,0,1"])
def test_compare_shows_the_chosen_trials_side_by_side(viewer: Any, study: Study, three: list[Trial], query: str) -> None:
    response = client_for(viewer).get(compare_url(study, query))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="compare-table"' in html
    table = html[html.index('id="compare-table"'):html.index("</table>")]
    assert "Trial 0" in table and "Trial 1" in table and "Trial 2" not in table
    assert "optimizer" in table and "learning_rate" in table  # params
    assert "0.9100" in table and "0.8500" in table  # accuracy
    assert "Dead units" in table and "0.7500" in table  # health
    assert 'id="compare-viewer-0"' in html and 'id="compare-viewer-1"' in html
    data = page_data(response, "compare-data")
    assert sorted(entry["number"] for entry in data) == [0, 1]
    assert {entry["number"]: entry["architecture"]["layers"][0]["type"] for entry in data} == {0: "InputLayer", 1: "Dense"}
    assert 'name="trials" value="2"' in html  # the form offers every trial
    assert 'value="0" checked' in html and 'value="2" checked' not in html


@pytest.mark.parametrize("query", ["?trials=0", "?trials=0,99", "?trials=abc", "?compare=1", "?trials="])
def test_compare_refuses_fewer_than_two_trials(viewer: Any, study: Study, three: list[Trial], query: str) -> None:
    response = client_for(viewer).get(compare_url(study, query))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Choose at least 2 trials to compare." in html
    assert 'id="compare-table"' not in html and 'id="compare-data"' not in html
    if "99" in query:
        assert f"Study {study.pk} has no trial 99." in html
    if "abc" in query:
        assert "Not a trial number: abc." in html
    if query == "?trials=0":
        assert 'value="0" checked' in html  # the choice is kept for the next try


def test_compare_without_a_choice_shows_only_the_form(viewer: Any, study: Study, three: list[Trial]) -> None:
    response = client_for(viewer).get(compare_url(study))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="compare-form"' in html and html.count('name="trials"') == 3
    assert 'id="compare-table"' not in html and "Choose at least" not in html


def test_outsider_gets_404_on_the_compare_page(outsider: Any, study: Study, three: list[Trial]) -> None:
    assert client_for(outsider).get(compare_url(study, "?trials=0,1")).status_code == 404


def test_compare_of_an_unknown_study_is_404(viewer: Any, study: Study) -> None:
    assert client_for(viewer).get(f"/studies/{study.pk + 1000}/compare/").status_code == 404
