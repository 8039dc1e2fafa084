"""The studies pages: the list (current workspace only), the new-study form (creates and
starts through the services, errors next to their fields, advanced overrides), and the
study page (server-rendered tiles and cards from the real state, roles, 404 for outsiders,
start and cancel)."""
from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import optuna
import pytest
from django.test import Client
from django.utils import timezone

from accounts.portal import SESSION_KEY
from studies.models import DatasetUpload, Status, Study, StudyLogEntry
from studies.optuna_storage import storage_for_study
from studies.progress import compute_progress
from studies.services import study_create, study_start
from studies.views import duration_text, percent_text, score_text
from trials.models import Trial

optuna.logging.set_verbosity(optuna.logging.ERROR)

CNN = {
    "layers": [
        {"type": "InputLayer", "activation": None},
        {"type": "Conv2D", "filters": 32, "kernel_size": [3, 3], "activation": "relu"},
        {"type": "MaxPooling2D", "activation": None},
        {"type": "Conv2D", "filters": 64, "kernel_size": [5, 5], "activation": "relu"},
        {"type": "Flatten", "activation": None},
        {"type": "Dense", "units": 128, "activation": "elu"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
    "total_params": 54321,
    "family": "cnn",
}


@pytest.fixture(autouse=True)
def no_tasks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the tasks the services enqueue instead of sending them to a broker."""
    sent: list[str] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda name, *args, **kwargs: sent.append(name))
    return sent


def client_for(user: Any) -> Client:
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def form_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "cnn search",
        "dataset": "digits",
        "mode": "simple",
        "n_trials": "5",
        "max_epochs": "4",
        "concurrency": "1",
        "executor": "local",
        "pruner": "none",
        "sample_fraction": "1",
        "seed": "",
        "search_space_json": "",
        "action": "create",
    }
    data.update(changes)
    return data


def field_block(html: str, field: str) -> str:
    """The rendered block of one form field (its wrapper div)."""
    match = re.search(rf'<div class="field[^"]*" id="field-{field}">(.*?)\n</div>', html, re.S)
    assert match, f"no block for {field}"
    return match.group(1)


# --- the list ------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_log_in(db: None) -> None:
    response = Client(HTTP_HOST="localhost").get("/studies/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=/studies/")


def test_list_shows_the_current_workspaces_studies_only(workspace: Any, owner: Any, outsider: Any) -> None:
    team = study_create(user=owner, workspace=workspace, name="team study")
    personal_workspace = owner.memberships.get(workspace__personal=True).workspace
    personal = study_create(user=owner, workspace=personal_workspace, name="my own study")
    foreign_workspace = outsider.memberships.get().workspace
    study_create(user=outsider, workspace=foreign_workspace, name="someone else's")
    client = client_for(owner)

    html = client.get("/studies/").content.decode()
    assert f'href="/studies/{team.pk}/"' in html and "team study" in html
    assert "my own study" not in html and "someone else" not in html
    assert '<span class="status draft">Draft</span>' in html
    assert "0 / 20" in html and "olivia" in html
    assert 'aria-current="page">Studies<' in html

    session = client.session
    session[SESSION_KEY] = personal_workspace.slug
    session.save()
    html = client.get("/studies/").content.decode()
    assert f'href="/studies/{personal.pk}/"' in html and "team study" not in html


def test_list_shows_progress_and_best_score_from_the_snapshot(workspace: Any, owner: Any) -> None:
    study = study_create(user=owner, workspace=workspace, name="s", n_trials=8)
    Study.objects.filter(pk=study.pk).update(progress={"finished": 3, "best_value": 0.91234, "best_total_score": 0.91234})
    html = client_for(owner).get("/studies/").content.decode()
    assert "3 / 8" in html and '<progress max="8" value="3"' in html and "0.9123" in html


def test_an_empty_list_links_to_a_new_study(workspace: Any, member: Any) -> None:
    html = client_for(member).get("/studies/").content.decode()
    assert 'id="no-studies"' in html and 'href="/studies/new/"' in html


# --- the new-study form ------------------------------------------------------------------


def test_new_study_form_shows_the_fields_with_the_data_set_kinds(workspace: Any, member: Any) -> None:
    html = client_for(member).get("/studies/new/").content.decode()
    assert 'aria-current="page">New study<' in html
    assert 'data-kind="image"' in html and 'data-kind="text"' in html and "· text" in html
    assert "0.7·accuracy + 0.3·health" in html and "gradient norms" in html
    assert '<option value="runpod"' in html and "falls back to local workers" in html
    assert not re.search(r'<option value="runpod"[^>]*disabled', html)
    assert '<details id="advanced"' in html and 'id="override-image-learning_rate"' in html
    assert 'id="override-text-lstm_units"' in html
    for field in ("name", "dataset", "n_trials", "max_epochs", "concurrency", "executor", "pruner", "sample_fraction", "seed"):
        assert f'<label for="id_{field}">' in html


def test_new_study_form_creates_a_draft(workspace: Any, member: Any, no_tasks: list[str]) -> None:
    response = client_for(member).post("/studies/new/", form_data(seed="7", mode="health", pruner="median"))
    study = Study.objects.get(name="cnn search")
    assert response.status_code == 302 and response["Location"] == f"/studies/{study.pk}/"
    assert study.workspace == workspace and study.created_by == member and study.status == Status.DRAFT
    assert (study.n_trials, study.max_epochs, study.seed, study.mode, study.pruner) == (5, 4, 7, "health", "median")
    assert study.search_space == {} and no_tasks == []


def test_create_and_start_queues_the_study(workspace: Any, member: Any) -> None:
    response = client_for(member).post("/studies/new/", form_data(action="start"), follow=True)
    study = Study.objects.get(name="cnn search")
    assert study.status == Status.QUEUED
    assert response.redirect_chain == [(f"/studies/{study.pk}/", 302)]
    assert "created and queued" in response.content.decode()


def test_bad_sample_fraction_is_shown_next_to_its_field(workspace: Any, member: Any) -> None:
    response = client_for(member).post("/studies/new/", form_data(sample_fraction="1.5"))
    assert response.status_code == 200 and not Study.objects.exists()
    block = field_block(response.content.decode(), "sample_fraction")
    assert 'class="errorlist"' in block and "sample_fraction must be above 0 and at most 1" in block


def test_duplicate_name_is_shown_next_to_the_name(workspace: Any, member: Any) -> None:
    study_create(user=member, workspace=workspace, name="cnn search")
    response = client_for(member).post("/studies/new/", form_data())
    assert "already exists" in field_block(response.content.decode(), "name")


def test_unknown_override_is_shown_next_to_the_overrides(workspace: Any, member: Any) -> None:
    response = client_for(member).post("/studies/new/", form_data(search_space_json='{"bogus": 1}'))
    assert response.status_code == 200 and not Study.objects.exists()
    html = response.content.decode()
    block = field_block(html, "search_space_json")
    assert "unknown parameter &#x27;bogus&#x27;" in block and "allowed:" in block
    assert '<details id="advanced" open>' in html


def test_invalid_json_overrides_are_refused(workspace: Any, member: Any) -> None:
    response = client_for(member).post("/studies/new/", form_data(search_space_json="{filters: 32"))
    assert "Not valid JSON" in field_block(response.content.decode(), "search_space_json")


def test_an_out_of_range_parameter_is_shown_on_its_row(workspace: Any, member: Any) -> None:
    response = client_for(member).post("/studies/new/", form_data(ov__image__learning_rate__high="0.5"))
    assert response.status_code == 200 and not Study.objects.exists()
    row = re.search(r'<tr id="override-image-learning_rate".*?</tr>', response.content.decode(), re.S)
    assert row and 'class="errorlist"' in row.group(0) and "outside" in row.group(0)


def test_advanced_overrides_arrive_in_the_search_space(workspace: Any, member: Any) -> None:
    data = form_data(
        search_space_json='{"dropout": 0.1, "filters": 64}',
        ov__image__filters__choices=["32"],
        ov__image__optimizer__choices=['"adam"', '"nadam"'],
        ov__image__batch_norm__choices=["true", "false"],  # all ticked: left free
        ov__image__learning_rate__low="0.001",
        ov__image__learning_rate__high="0.005",
        ov__image__dense_units__low="64",
        ov__image__conv_blocks__fixed="2",
        ov__text__lstm_units__fixed="32",  # another kind's row: not used
    )
    response = client_for(member).post("/studies/new/", data)
    assert response.status_code == 302, response.content.decode()
    assert Study.objects.get(name="cnn search").search_space == {
        "dropout": 0.1,
        "filters": 32,
        "optimizer": {"choices": ["adam", "nadam"]},
        "learning_rate": {"low": 0.001, "high": 0.005},
        "dense_units": {"low": 64, "high": 256},
        "conv_blocks": 2,
    }


def test_fixed_value_and_range_together_are_refused(workspace: Any, member: Any) -> None:
    response = client_for(member).post(
        "/studies/new/", form_data(ov__image__dropout__fixed="0.2", ov__image__dropout__low="0.1")
    )
    assert response.status_code == 200 and not Study.objects.exists()
    assert "fixed value or a range, not both" in response.content.decode()


def test_a_runpod_study_can_be_created(workspace: Any, member: Any) -> None:
    client_for(member).post("/studies/new/", form_data(executor="runpod"))
    assert Study.objects.get().executor == "runpod"


def test_a_workspace_upload_can_be_chosen(workspace: Any, member: Any, settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    upload = DatasetUpload.objects.create(
        workspace=workspace, name="reviews", kind="text", file="uploads/reviews.csv", size_bytes=10
    )
    client = client_for(member)
    assert f'<option value="upload:{upload.pk}" data-kind="text">reviews' in client.get("/studies/new/").content.decode()
    response = client.post("/studies/new/", form_data(dataset=f"upload:{upload.pk}", ov__text__lstm_layers__fixed="2"))
    assert response.status_code == 302, response.content.decode()
    study = Study.objects.get(name="cnn search")
    assert (study.dataset, study.task_kind, study.search_space) == ("upload", "text", {"lstm_layers": 2})
    assert study.dataset_options["upload_id"] == upload.pk


def test_viewers_cannot_create_studies(workspace: Any, viewer: Any) -> None:
    client = client_for(viewer)
    session = client.session
    session[SESSION_KEY] = workspace.slug
    session.save()
    assert 'id="viewer-notice"' in client.get("/studies/new/").content.decode()
    response = client.post("/studies/new/", form_data())
    assert response.status_code == 200 and not Study.objects.exists()
    assert "member role or higher" in response.content.decode()


# --- the study page --------------------------------------------------------------------------


@pytest.fixture
def running_study(workspace: Any, owner: Any) -> Study:
    """Five trials through Optuna (three complete, one pruned, one running), with the
    platform's columns set as the workers set them; the study running."""
    study = study_create(user=owner, workspace=workspace, name="live", n_trials=6, mode="health")
    optuna_study = optuna.load_study(study_name=study.optuna_name, storage=storage_for_study(study))
    for value in (0.80, 0.90, 0.85):
        trial = optuna_study.ask()
        trial.suggest_float("x", 0, 1)
        optuna_study.tell(trial, value)
    optuna_study.tell(optuna_study.ask(), state=optuna.trial.TrialState.PRUNED)
    optuna_study.ask()  # still running
    now = timezone.now()
    for number, (accuracy, seconds) in enumerate(((0.81, 60), (0.93, 90), (0.88, 120))):
        Trial.objects.filter(study=study, number=number).update(
            accuracy=accuracy, health_score=0.8, total_score=[0.80, 0.90, 0.85][number], outcome="complete",
            architecture=CNN, param_count=54321,
            health_metrics={"score": 0.8, "components": {"gradients": 1.0, "dead_units": 0.75}, "metrics": {"dead_fraction": 0.25}},
            datetime_start=now - timedelta(seconds=seconds), datetime_complete=now,
        )
    Trial.objects.filter(study=study, number=3).update(outcome="pruned")
    Trial.objects.filter(study=study, number=4).update(progress={"epoch": 2, "epochs": 5, "fraction": 0.5})
    Study.objects.filter(pk=study.pk).update(status=Status.RUNNING)
    StudyLogEntry.objects.create(study=study, trial_number=1, message="Trial complete score 0.9000.")
    return Study.objects.get(pk=study.pk)


def tile(html: str, name: str) -> str:
    match = re.search(rf'id="tile-{name}">.*?<div class="value">(.*?)</div>', html, re.S)
    assert match, f"no tile {name}"
    return match.group(1)


def test_study_page_renders_the_tiles_from_the_current_state(running_study: Study, member: Any) -> None:
    html = client_for(member).get(f"/studies/{running_study.pk}/").content.decode()
    progress = compute_progress(running_study)
    assert (progress["finished"], progress["best_trial"], progress["average_trial_s"]) == (4, 1, pytest.approx(90, abs=1))
    assert tile(html, "trials") == "4 / 6"
    assert tile(html, "best-accuracy") == percent_text(progress["best_accuracy"]) == "93.0%"
    assert tile(html, "best-score") == score_text(progress["best_total_score"]) == "0.9000"
    assert "0.7·accuracy + 0.3·health" in html
    assert tile(html, "average") == duration_text(progress["average_trial_s"]) == "1 min 30 s"
    assert tile(html, "eta") == duration_text(progress["eta_s"]) == "3 min 0 s"
    assert '<progress id="overall-progress" max="6" value="4">' in html
    running = re.search(r'<ul id="running-trials".*?</ul>', html, re.S).group(0)
    assert 'data-trial="4"' in running and "epoch 2 of 5" in running and 'value="0.5"' in running
    assert '<p id="no-running" class="muted" hidden>' in html


def test_study_page_has_a_card_per_trial(running_study: Study, member: Any) -> None:
    html = client_for(member).get(f"/studies/{running_study.pk}/").content.decode()
    gallery = re.search(r'<div id="gallery".*?</template>', html, re.S).group(0)
    cards = re.findall(r'<article class="card trial-card" data-trial="(\d*)"', gallery)
    assert cards == ["0", "1", "2", "3", "4", ""]  # the last is the template's
    best = re.search(r'data-trial="1".*?</article>', gallery, re.S).group(0)
    for text in ('class="status complete"', "93.0%", "0.8000", "0.9000", "1 min 30 s", "Conv layers</dt><dd>2",
                 "32, 64", "3×3, 5×5", "Dense layers</dt><dd>2", "128, 10", "relu, elu, softmax", "54,321",
                 f'href="/studies/{running_study.pk}/trials/1/"'):
        assert text in best, text
    assert 'class="status pruned"' in re.search(r'data-trial="3".*?</article>', gallery, re.S).group(0)
    assert "epoch 2 of 5" in re.search(r'data-trial="4".*?</article>', gallery, re.S).group(0)


def test_study_page_shows_the_best_trial_plots_and_log(running_study: Study, member: Any) -> None:
    html = client_for(member).get(f"/studies/{running_study.pk}/").content.decode()
    best = Trial.objects.get(study=running_study, number=1)
    assert f'data-architecture-url="/api/v1/trials/{best.pk}/"' in html and 'class="viewer" id="best-architecture"' in html
    health = re.search(r'<table id="best-health">.*?</table>', html, re.S).group(0)
    assert "Dead filters and units</th><td>0.7500" in health and "25.0%" in health
    assert re.search(r'id="best-model-link"[^>]*hidden', html)  # no model file kept
    for kind in ("history", "importance", "parallel", "contour", "slice", "intermediate", "timeline"):
        assert f'id="plot-{kind}"' in html
    assert 'role="tablist"' in html and 'aria-controls="panel-more"' in html
    assert re.search(r'<div role="tabpanel" id="panel-more"[^>]*hidden', html)
    log = re.search(r'<pre class="log" id="study-log".*?</pre>', html, re.S).group(0)
    assert "trial 1: Trial complete score 0.9000." in log
    data = json.loads(re.search(r'<script id="study-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert data["best_trial"] == {"number": 1, "id": best.pk} and data["status"] == "running"


def test_members_see_start_on_a_draft_and_cancel_on_a_running_study(workspace: Any, member: Any, running_study: Study) -> None:
    draft = study_create(user=member, workspace=workspace, name="draft")
    client = client_for(member)
    html = client.get(f"/studies/{draft.pk}/").content.decode()
    assert '<form method="post" action="/studies/%d/start/" id="start-form">' % draft.pk in html
    assert re.search(r'id="cancel-form" hidden', html)
    html = client.get(f"/studies/{running_study.pk}/").content.decode()
    assert re.search(r'id="start-form" hidden', html)
    assert '<form method="post" action="/studies/%d/cancel/" id="cancel-form">' % running_study.pk in html


def test_viewers_see_no_start_or_cancel(running_study: Study, viewer: Any) -> None:
    response = client_for(viewer).get(f"/studies/{running_study.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="start-form"' not in html and 'id="cancel-form"' not in html


def test_outsiders_get_404_for_the_page_and_its_actions(running_study: Study, outsider: Any) -> None:
    client = client_for(outsider)
    assert client.get(f"/studies/{running_study.pk}/").status_code == 404
    assert client.post(f"/studies/{running_study.pk}/start/").status_code == 404
    assert client.post(f"/studies/{running_study.pk}/cancel/").status_code == 404
    assert Study.objects.get(pk=running_study.pk).status == Status.RUNNING


def test_cancel_through_the_page(workspace: Any, member: Any) -> None:
    study = study_start(user=member, study=study_create(user=member, workspace=workspace, name="s"))
    response = client_for(member).post(f"/studies/{study.pk}/cancel/", follow=True)
    assert response.redirect_chain == [(f"/studies/{study.pk}/", 302)]
    assert Study.objects.get(pk=study.pk).status == Status.CANCELLED
    html = response.content.decode()
    assert '<span id="study-status" class="status cancelled">Cancelled</span>' in html and "Cancelled by mia" in html


def test_cancelling_a_running_study_leaves_it_cancelling(running_study: Study, member: Any) -> None:
    client_for(member).post(f"/studies/{running_study.pk}/cancel/")
    assert Study.objects.get(pk=running_study.pk).status == Status.CANCELLING


def test_start_through_the_page(workspace: Any, member: Any, no_tasks: list[str]) -> None:
    study = study_create(user=member, workspace=workspace, name="s")
    client = client_for(member)
    assert client.get(f"/studies/{study.pk}/start/").status_code == 405
    client.post(f"/studies/{study.pk}/start/")
    assert Study.objects.get(pk=study.pk).status == Status.QUEUED
    response = client.post(f"/studies/{study.pk}/start/", follow=True)  # not a draft any more
    assert "only a draft can start" in response.content.decode()


def test_a_viewer_posting_cancel_is_refused_with_a_message(running_study: Study, viewer: Any) -> None:
    response = client_for(viewer).post(f"/studies/{running_study.pk}/cancel/", follow=True)
    assert Study.objects.get(pk=running_study.pk).status == Status.RUNNING
    assert "member role or higher" in response.content.decode()


def test_a_draft_page_renders_without_trials(workspace: Any, member: Any) -> None:
    study = study_create(user=member, workspace=workspace, name="empty")
    html = client_for(member).get(f"/studies/{study.pk}/").content.decode()
    assert tile(html, "trials") == "0 / 20" and tile(html, "best-accuracy") == "—" and tile(html, "eta") == "—"
    assert '<p id="no-trials" class="muted">' in html and '<p id="no-best" class="muted">' in html


def test_a_runpod_study_page_shows_its_cloud_cost(workspace: Any, member: Any, admin_user: Any) -> None:
    from accounts.services import cloud_credentials_set
    from trials.models import Trial

    cloud_credentials_set(actor=admin_user, workspace=workspace, api_key="k" * 20, endpoint_id="ep", gpu_type="A100")
    client_for(member).post("/studies/new/", form_data(executor="runpod"))
    study = Study.objects.get()
    Trial.objects.create(study=study, number=0, state="COMPLETE", value=0.5, executor="runpod", gpu_seconds=3600)
    html = client_for(member).get(f"/studies/{study.pk}/").content.decode()
    assert 'id="study-cost">$2.17<' in html
