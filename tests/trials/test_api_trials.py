"""The trials REST API (/api/v1/trials/...): a trial's detail with its epochs, cancelling a
running trial, and its model download; the outsider gets a 404 everywhere."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest

from studies.models import Study
from studies.optuna_storage import DjangoStorage
from studies.services import study_create
from trials.models import Trial, TrialEpoch

API = "/api/v1"


@pytest.fixture
def study(workspace: Any, member: Any) -> Study:
    return study_create(user=member, workspace=workspace, name="cnn", n_trials=5)


@pytest.fixture
def optuna_study(study: Study) -> optuna.Study:
    return optuna.load_study(study_name=study.optuna_name, storage=DjangoStorage())


@pytest.fixture
def finished(optuna_study: optuna.Study, tmp_path: Path, settings: Any) -> Trial:
    """A complete trial made through Optuna, with what the workers add and a kept model."""
    settings.MEDIA_ROOT = str(tmp_path)
    trial = optuna_study.ask()
    trial.suggest_categorical("optimizer", ["adam", "sgd"])
    trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
    trial.suggest_int("layers", 1, 3)
    trial.report(0.5, 1)
    trial.report(float("nan"), 2)
    trial.set_user_attr("note", "first")
    optuna_study.tell(trial, 0.91)
    model = tmp_path / "studies" / str(optuna_study._study_id) / "trials" / "0" / "model.keras"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"keras zip bytes")
    Trial.objects.filter(pk=trial._trial_id).update(
        accuracy=0.91,
        health_score=0.8,
        total_score=0.91,
        health_metrics={"dead_relu": 0.1},
        architecture={"layers": [{"type": "Dense", "units": 10}], "total_params": 110},
        param_count=110,
        executor="local",
        worker="gpu-1:42",
        gpu_seconds=12.5,
        outcome="complete",
        artifacts={"model": str(model), "details": str(model.with_name("details.json"))},
    )
    row = Trial.objects.get(pk=trial._trial_id)
    TrialEpoch.objects.create(trial=row, epoch=2, loss=0.4, accuracy=0.9, val_loss=float("nan"), val_accuracy=0.91, seconds=1.5)
    TrialEpoch.objects.create(trial=row, epoch=1, loss=0.8, accuracy=0.7, val_loss=0.7, val_accuracy=0.75, seconds=1.4)
    return row


@pytest.fixture
def running(optuna_study: optuna.Study) -> Trial:
    trial = optuna_study.ask()
    Trial.objects.filter(pk=trial._trial_id).update(progress={"epoch": 1, "epochs": 3, "fraction": 0.25})
    return Trial.objects.get(pk=trial._trial_id)


# --- detail ---------------------------------------------------------------------------------


def test_detail_has_params_metrics_health_architecture_and_epochs(
    api_client: Any, viewer: Any, study: Study, finished: Trial, tmp_path: Path
) -> None:
    response = api_client(viewer).get(f"{API}/trials/{finished.pk}/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["number"], body["state"], body["value"], body["accuracy"]) == (0, "COMPLETE", 0.91, 0.91)
    assert body["params"]["optimizer"] in ("adam", "sgd") and body["params"]["layers"] in (1, 2, 3)
    assert isinstance(body["params"]["learning_rate"], float)
    assert body["intermediate_values"] == {"1": 0.5, "2": None}
    assert body["values"] == [0.91] and body["user_attrs"] == {"note": "first"}
    assert body["health_metrics"] == {"dead_relu": 0.1} and body["health_score"] == 0.8
    assert body["architecture"]["total_params"] == 110 and body["param_count"] == 110
    assert (body["executor"], body["worker"], body["gpu_seconds"]) == ("local", "gpu-1:42", 12.5)
    assert [e["epoch"] for e in body["epochs"]] == [1, 2]
    assert body["epochs"][1] == {"epoch": 2, "loss": 0.4, "accuracy": 0.9, "val_loss": None, "val_accuracy": 0.91, "seconds": 1.5}
    assert body["artifacts"] == ["details", "model"]
    assert body["model_url"] == f"http://localhost{API}/trials/{finished.pk}/model/"
    assert body["url"] == f"http://localhost{API}/trials/{finished.pk}/"
    assert body["page"] == f"/studies/{study.pk}/trials/0/" and body["study"] == study.pk
    assert body["duration_s"] is not None and body["duration_s"] >= 0


def test_detail_never_shows_server_paths(api_client: Any, viewer: Any, finished: Trial, tmp_path: Path) -> None:
    text = api_client(viewer).get(f"{API}/trials/{finished.pk}/").content.decode()
    assert str(tmp_path) not in text and ".keras" not in text


def test_running_trial_shows_its_progress(api_client: Any, viewer: Any, running: Trial) -> None:
    body = api_client(viewer).get(f"{API}/trials/{running.pk}/").json()
    assert body["state"] == "RUNNING" and body["progress"] == {"epoch": 1, "epochs": 3, "fraction": 0.25}
    assert body["model_url"] is None and body["artifacts"] == [] and body["datetime_complete"] is None


def test_study_trial_list_shows_external_params(api_client: Any, viewer: Any, study: Study, finished: Trial) -> None:
    result = api_client(viewer).get(f"{API}/studies/{study.pk}/trials/").json()["results"][0]
    assert result["params"]["optimizer"] in ("adam", "sgd") and "epochs" not in result


# --- cancel ---------------------------------------------------------------------------------


def test_member_cancels_a_running_trial(api_client: Any, member: Any, running: Trial) -> None:
    response = api_client(member).post(f"{API}/trials/{running.pk}/cancel/")
    assert response.status_code == 200, response.content
    assert response.json()["cancel_requested"] is True
    assert Trial.objects.get(pk=running.pk).cancel_requested


def test_viewer_cannot_cancel_a_trial(api_client: Any, viewer: Any, running: Trial) -> None:
    assert api_client(viewer).post(f"{API}/trials/{running.pk}/cancel/").status_code == 403
    assert not Trial.objects.get(pk=running.pk).cancel_requested


def test_cancel_refuses_a_finished_trial_and_unknown_fields(api_client: Any, member: Any, finished: Trial, running: Trial) -> None:
    client = api_client(member)
    done = client.post(f"{API}/trials/{finished.pk}/cancel/")
    assert done.status_code == 400 and "not running" in done.json()["state"][0]
    extra = client.post(f"{API}/trials/{running.pk}/cancel/", {"hard": True})
    assert extra.status_code == 400 and "Unknown field" in extra.json()["hard"][0]
    assert not Trial.objects.get(pk=running.pk).cancel_requested


# --- model download -------------------------------------------------------------------------


def test_model_download(api_client: Any, viewer: Any, study: Study, finished: Trial) -> None:
    response = api_client(viewer).get(f"{API}/trials/{finished.pk}/model/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"keras zip bytes"
    assert response["Content-Disposition"] == f'attachment; filename="study-{study.pk}-trial-0.keras"'


def test_model_download_also_answers_an_octet_stream_accept(api_client: Any, viewer: Any, finished: Trial) -> None:
    response = api_client(viewer).get(f"{API}/trials/{finished.pk}/model/", HTTP_ACCEPT="application/octet-stream")
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"keras zip bytes"


def test_model_not_kept_is_404_with_a_reason(api_client: Any, viewer: Any, running: Trial, finished: Trial) -> None:
    response = api_client(viewer).get(f"{API}/trials/{running.pk}/model/")
    assert response.status_code == 404 and "no model file" in response.json()["detail"]
    Path(finished.artifacts["model"]).unlink()
    gone = api_client(viewer).get(f"{API}/trials/{finished.pk}/model/")
    assert gone.status_code == 404 and "gone" in gone.json()["detail"]
    assert finished.artifacts["model"] not in json.dumps(gone.json())


def test_model_outside_media_root_is_never_served(api_client: Any, viewer: Any, finished: Trial, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-secret.keras"
    outside.write_bytes(b"secret")
    try:
        Trial.objects.filter(pk=finished.pk).update(artifacts={"model": str(outside)})
        response = api_client(viewer).get(f"{API}/trials/{finished.pk}/model/")
        assert response.status_code == 404 and b"secret" not in response.content
    finally:
        outside.unlink()


# --- scoping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("get", "/trials/{id}/"), ("post", "/trials/{id}/cancel/"), ("get", "/trials/{id}/model/")]
)
def test_outsider_gets_404_on_every_trial_endpoint(
    api_client: Any, outsider: Any, running: Trial, finished: Trial, method: str, path: str
) -> None:
    client = api_client(outsider)
    for trial in (running, finished):
        response = getattr(client, method)(f"{API}{path.format(id=trial.pk)}", {"bogus": 1})
        assert response.status_code == 404, response.content
    assert not Trial.objects.get(pk=running.pk).cancel_requested


def test_unknown_trial_is_404(api_client: Any, member: Any) -> None:
    assert api_client(member).get(f"{API}/trials/999999/").status_code == 404


def test_methods_the_endpoints_lack_are_405(api_client: Any, member: Any, finished: Trial) -> None:
    client = api_client(member)
    assert client.delete(f"{API}/trials/{finished.pk}/").status_code == 405
    assert client.post(f"{API}/trials/{finished.pk}/model/").status_code == 405
