"""The studies REST API (/api/v1/studies/...): listing, creating, changing, deleting,
the actions, progress, log, a study's trials and the best model download. Every endpoint
is also tried by the outsider (404 for every method) and every write by the viewer (403)."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import AuditEntry, Membership, Role
from studies.models import DatasetUpload, LogLevel, Status, Study, StudyLogEntry
from studies.services import study_create, study_log
from tests.conftest import make_user
from trials.models import Trial, TrialEpoch

API = "/api/v1"


@pytest.fixture
def study(workspace: Any, member: Any) -> Study:
    return study_create(user=member, workspace=workspace, name="cnn", n_trials=5, max_epochs=3)


def make_trial(study: Study, number: int, state: str = "COMPLETE", value: float | None = None, **extra: Any) -> Trial:
    return Trial.objects.create(study=study, number=number, state=state, value=value, **extra)


def set_status(study: Study, status: str) -> Study:
    Study.objects.filter(pk=study.pk).update(status=status)
    study.refresh_from_db()
    return study


# --- every endpoint, every method: another workspace's study is a 404 -------------------------

STUDY_ENDPOINTS = [
    ("get", "/studies/{id}/"),
    ("patch", "/studies/{id}/"),
    ("delete", "/studies/{id}/"),
    ("post", "/studies/{id}/start/"),
    ("post", "/studies/{id}/cancel/"),
    ("post", "/studies/{id}/resume/"),
    ("post", "/studies/{id}/clone/"),
    ("get", "/studies/{id}/progress/"),
    ("get", "/studies/{id}/log/"),
    ("get", "/studies/{id}/trials/"),
    ("get", "/studies/{id}/best-model/"),
]


@pytest.mark.parametrize(("method", "path"), STUDY_ENDPOINTS)
def test_outsider_gets_404_on_every_study_endpoint(
    api_client: Any, outsider: Any, study: Study, method: str, path: str, tmp_path: Path, settings: Any
) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    model = tmp_path / "m.keras"
    model.write_bytes(b"model")
    make_trial(study, 0, value=0.9, artifacts={"model": str(model)})
    # Even a body and query that would be refused must not reveal the study exists.
    response = getattr(api_client(outsider), method)(f"{API}{path.format(id=study.pk)}?level=nope&state=nope", {"bogus": 1})
    assert response.status_code == 404, response.content
    assert "cnn" not in response.content.decode()
    assert Study.objects.get(pk=study.pk).status == Status.DRAFT
    assert Study.objects.count() == 1


def test_outsider_cannot_create_in_or_list_another_workspace(api_client: Any, outsider: Any, workspace: Any, study: Study) -> None:
    client = api_client(outsider)
    assert client.get(f"{API}/studies/").json()["results"] == []
    assert client.get(f"{API}/studies/", {"workspace": workspace.slug}).status_code == 404
    response = client.post(f"{API}/studies/", {"workspace": workspace.slug, "name": "sneaky"})
    assert response.status_code == 404
    assert not Study.objects.filter(name="sneaky").exists()


def test_anonymous_is_refused(api_client: Any, study: Study) -> None:
    assert api_client(None).get(f"{API}/studies/").status_code in (401, 403)
    assert api_client(None).get(f"{API}/studies/{study.pk}/").status_code in (401, 403)


# --- list and create ----------------------------------------------------------------------------


def test_list_is_newest_first_paginated_and_filtered(api_client: Any, workspace: Any, member: Any, viewer: Any, outsider: Any) -> None:
    first = study_create(user=member, workspace=workspace, name="first")
    second = study_create(user=member, workspace=workspace, name="second")
    Study.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=1))
    set_status(second, Status.COMPLETED)
    study_create(user=outsider, workspace=outsider.memberships.get().workspace, name="theirs")
    client = api_client(viewer)
    body = client.get(f"{API}/studies/").json()
    assert body["count"] == 2 and [s["name"] for s in body["results"]] == ["second", "first"]
    assert client.get(f"{API}/studies/", {"status": "completed"}).json()["count"] == 1
    assert client.get(f"{API}/studies/", {"workspace": workspace.slug, "status": "draft"}).json()["results"][0]["name"] == "first"
    page = client.get(f"{API}/studies/", {"page_size": 1, "page": 2}).json()
    assert [s["name"] for s in page["results"]] == ["first"] and page["previous"] and page["next"] is None


def test_list_refuses_an_unknown_status_listing_the_allowed(api_client: Any, member: Any) -> None:
    response = api_client(member).get(f"{API}/studies/", {"status": "paused"})
    assert response.status_code == 400
    assert "draft" in response.json()["status"][0] and "running" in response.json()["status"][0]


def test_member_creates_a_draft(api_client: Any, workspace: Any, member: Any) -> None:
    response = api_client(member).post(
        f"{API}/studies/",
        {
            "workspace": workspace.slug,
            "name": "sentiment",
            "dataset": "imdb",
            "n_trials": 4,
            "max_epochs": 2,
            "seed": 7,
            "mode": "health",
            "pruner": "median",
            "directions": ["maximize"],
            "health_weights": {"accuracy": 3, "health": 1},
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    study = Study.objects.get(pk=body["id"])
    assert (study.name, study.task_kind, study.created_by, study.status) == ("sentiment", "text", member, Status.DRAFT)
    assert body["workspace"] == workspace.slug and body["created_by"] == "mia" and body["status"] == "draft"
    assert body["url"] == f"http://localhost{API}/studies/{study.pk}/" and body["page"] == f"/studies/{study.pk}/"
    assert body["n_trials"] == 4 and body["mode"] == "health" and body["seed"] == 7


def test_viewer_cannot_create(api_client: Any, workspace: Any, viewer: Any) -> None:
    response = api_client(viewer).post(f"{API}/studies/", {"workspace": workspace.slug, "name": "nope"})
    assert response.status_code == 403
    assert "member role" in response.json()["detail"]
    assert not Study.objects.exists()


def test_create_refuses_unknown_fields_naming_them(api_client: Any, workspace: Any, member: Any) -> None:
    response = api_client(member).post(f"{API}/studies/", {"workspace": workspace.slug, "name": "x", "trials": 5})
    assert response.status_code == 400
    assert "Unknown field" in response.json()["trials"][0] and "n_trials" in response.json()["trials"][0]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("n_trials", 0, "greater than or equal to 1"),
        ("n_trials", "many", "valid integer"),
        ("concurrency", 65, "less than or equal to 64"),
        ("mode", "fast", "simple, health"),
        ("executor", "aws", "local, runpod"),
        ("pruner", "asha", "none, median, hyperband"),
        ("dataset", "svhn", "digits"),
        ("sample_fraction", 1.5, "at most 1"),
        ("directions", ["up"], "maximize or minimize"),
        ("directions", [], "at least 1"),
        ("seed", -1, "greater than or equal to 0"),
        ("search_space", ["lr"], "dictionary"),
        ("search_space", {"no_such_param": 1}, "no_such_param"),
        ("dataset_options", {"path": "/etc"}, "the server sets it"),
        ("name", "", "blank"),
        ("health_weights", {"accuracy": -1}, ""),
    ],
)
def test_create_refuses_bad_values_naming_the_field(
    api_client: Any, workspace: Any, member: Any, field: str, value: Any, says: str
) -> None:
    body = {"workspace": workspace.slug, "name": "ok", field: value}
    response = api_client(member).post(f"{API}/studies/", body)
    assert response.status_code == 400, response.content
    messages = " ".join(str(m) for m in response.json()[field])
    assert says in messages
    assert not Study.objects.exists()


def test_create_needs_workspace_and_name_and_a_free_name(api_client: Any, workspace: Any, member: Any, study: Study) -> None:
    client = api_client(member)
    missing = client.post(f"{API}/studies/", {})
    assert missing.status_code == 400 and set(missing.json()) == {"workspace", "name"}
    duplicate = client.post(f"{API}/studies/", {"workspace": workspace.slug, "name": "cnn"})
    assert duplicate.status_code == 400 and "already exists" in duplicate.json()["name"][0]


@pytest.fixture
def upload(workspace: Any, member: Any, tmp_path: Path, settings: Any) -> DatasetUpload:
    settings.MEDIA_ROOT = str(tmp_path)
    return DatasetUpload.objects.create(
        workspace=workspace, name="faces", kind="image", size_bytes=10, file=f"uploads/{workspace.pk}/abc.npz", created_by=member
    )


def test_create_on_an_upload_hides_its_path(api_client: Any, workspace: Any, member: Any, upload: DatasetUpload, tmp_path: Path) -> None:
    response = api_client(member).post(
        f"{API}/studies/", {"workspace": workspace.slug, "name": "u", "dataset": "upload", "upload": upload.pk}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["dataset"], body["upload"], body["task_kind"]) == ("upload", upload.pk, "image")
    assert "path" not in body["dataset_options"] and str(tmp_path) not in response.content.decode()
    assert Study.objects.get(pk=body["id"]).dataset_options["path"] == upload.file.path


def test_create_refuses_another_workspaces_upload(api_client: Any, workspace: Any, outsider: Any, member: Any, tmp_path: Path, settings: Any) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    theirs = DatasetUpload.objects.create(
        workspace=outsider.memberships.get().workspace, name="x", kind="image", size_bytes=1, file="uploads/9/x.npz"
    )
    response = api_client(member).post(
        f"{API}/studies/", {"workspace": workspace.slug, "name": "u", "dataset": "upload", "upload": theirs.pk}
    )
    assert response.status_code == 400 and "No upload" in response.json()["upload"][0]


def test_patch_and_clone_of_an_upload_study_keep_the_upload(
    api_client: Any, workspace: Any, member: Any, upload: DatasetUpload
) -> None:
    study = study_create(user=member, workspace=workspace, name="u", dataset="upload", upload_id=upload.pk, dataset_options={})
    client = api_client(member)
    patched = client.patch(f"{API}/studies/{study.pk}/", {"dataset_options": {}, "n_trials": 3})
    assert patched.status_code == 200, patched.content
    assert Study.objects.get(pk=study.pk).dataset_options == {"path": upload.file.path, "upload_id": upload.pk}
    clone = client.post(f"{API}/studies/{study.pk}/clone/")
    assert clone.status_code == 201, clone.content
    assert clone.json()["upload"] == upload.pk and clone.json()["n_trials"] == 3
    away = client.patch(f"{API}/studies/{study.pk}/", {"dataset": "digits"})
    assert away.status_code == 200 and away.json()["upload"] is None
    assert Study.objects.get(pk=study.pk).dataset_options == {}
    back = client.patch(f"{API}/studies/{study.pk}/", {"dataset": "upload"})
    assert back.status_code == 400 and "upload" in back.json()
    again = client.patch(f"{API}/studies/{study.pk}/", {"dataset": "upload", "upload": upload.pk})
    assert again.status_code == 200 and again.json()["upload"] == upload.pk


# --- retrieve, change, delete -------------------------------------------------------------------


def test_viewer_reads_a_study_without_server_paths(api_client: Any, viewer: Any, study: Study) -> None:
    Study.objects.filter(pk=study.pk).update(dataset_options={"path": "/srv/media/uploads/secret.npz", "vocab_size": 5})
    response = api_client(viewer).get(f"{API}/studies/{study.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["dataset_options"] == {"vocab_size": 5}
    assert "/srv/" not in response.content.decode()
    for field in ("status", "status_reason", "progress", "created_by", "created_at", "updated_at", "queued_at", "search_space"):
        assert field in body


def test_patch_changes_a_draft(api_client: Any, member: Any, study: Study) -> None:
    response = api_client(member).patch(f"{API}/studies/{study.pk}/", {"n_trials": 9, "name": "renamed", "seed": None})
    assert response.status_code == 200, response.content
    study.refresh_from_db()
    assert (study.n_trials, study.name, study.seed) == (9, "renamed", None)
    assert study.optuna_name.endswith("/renamed")
    assert response.json()["name"] == "renamed"
    assert AuditEntry.objects.get(action="study.update").details == {"fields": ["n_trials", "name"]}


def test_patch_revalidates_the_whole_study(api_client: Any, member: Any, study: Study) -> None:
    # max_epochs 3 was set at creation; a search space that needs more must be refused.
    client = api_client(member)
    assert client.patch(f"{API}/studies/{study.pk}/", {"dataset": "svhn"}).json()["dataset"]
    response = client.patch(f"{API}/studies/{study.pk}/", {"sample_fraction": 0})
    assert response.status_code == 400 and "above 0" in response.json()["sample_fraction"][0]
    assert Study.objects.get(pk=study.pk).sample_fraction == 1.0


def test_patch_keeps_a_server_set_dataset_path(api_client: Any, member: Any, study: Study) -> None:
    Study.objects.filter(pk=study.pk).update(dataset_options={"path": "/srv/x.npz"})
    response = api_client(member).patch(f"{API}/studies/{study.pk}/", {"dataset_options": {"vocab_size": 100}})
    assert response.status_code == 200
    assert Study.objects.get(pk=study.pk).dataset_options == {"vocab_size": 100, "path": "/srv/x.npz"}


def test_patch_refuses_unknown_and_read_only_fields(api_client: Any, member: Any, study: Study) -> None:
    client = api_client(member)
    for field in ("status", "workspace", "bogus"):
        response = client.patch(f"{API}/studies/{study.pk}/", {field: "x"})
        assert response.status_code == 400 and "Unknown field" in response.json()[field][0]


def test_patch_only_while_draft(api_client: Any, member: Any, study: Study) -> None:
    set_status(study, Status.QUEUED)
    response = api_client(member).patch(f"{API}/studies/{study.pk}/", {"n_trials": 9})
    assert response.status_code == 400 and "only a draft" in response.json()["status"][0]
    assert Study.objects.get(pk=study.pk).n_trials == 5


def test_patch_refuses_a_taken_name(api_client: Any, workspace: Any, member: Any, study: Study) -> None:
    study_create(user=member, workspace=workspace, name="other")
    response = api_client(member).patch(f"{API}/studies/{study.pk}/", {"name": "other"})
    assert response.status_code == 400 and "already exists" in response.json()["name"][0]


def test_viewer_cannot_patch_or_delete(api_client: Any, viewer: Any, study: Study) -> None:
    client = api_client(viewer)
    assert client.patch(f"{API}/studies/{study.pk}/", {"n_trials": 9}).status_code == 403
    assert client.delete(f"{API}/studies/{study.pk}/").status_code == 403
    assert Study.objects.get(pk=study.pk).n_trials == 5


def test_creator_deletes_study_with_trials_and_files(
    api_client: Any, member: Any, study: Study, tmp_path: Path, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    folder = tmp_path / "studies" / str(study.pk) / "trials" / "0"
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"model")
    other = tmp_path / "studies" / str(study.pk + 1000)
    other.mkdir()
    trial = make_trial(study, 0, value=0.5, artifacts={"model": str(folder / "model.keras")})
    TrialEpoch.objects.create(trial=trial, epoch=1, loss=0.3)
    set_status(study, Status.COMPLETED)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(member).delete(f"{API}/studies/{study.pk}/")
    assert response.status_code == 204
    assert not Study.objects.exists() and not Trial.objects.exists() and not TrialEpoch.objects.exists()
    assert not (tmp_path / "studies" / str(study.pk)).exists()
    assert other.exists()
    assert AuditEntry.objects.filter(action="study.delete", target_id=str(study.pk)).exists()


def test_admin_deletes_anyones_study_but_another_member_cannot(
    api_client: Any, workspace: Any, admin_user: Any, study: Study
) -> None:
    colleague = make_user("carl")
    Membership.objects.create(user=colleague, workspace=workspace, role=Role.MEMBER)
    response = api_client(colleague).delete(f"{API}/studies/{study.pk}/")
    assert response.status_code == 403 and "member who created" in response.json()["detail"]
    assert api_client(admin_user).delete(f"{API}/studies/{study.pk}/").status_code == 204


@pytest.mark.parametrize("status", [Status.QUEUED, Status.RUNNING, Status.CANCELLING])
def test_delete_is_refused_while_active(api_client: Any, owner: Any, study: Study, status: str) -> None:
    set_status(study, status)
    response = api_client(owner).delete(f"{API}/studies/{study.pk}/")
    assert response.status_code == 400
    assert "cancel it" in response.json()["status"][0]
    assert Study.objects.filter(pk=study.pk).exists()


# --- actions ------------------------------------------------------------------------------------


def test_start_queues_a_draft(api_client: Any, member: Any, study: Study) -> None:
    response = api_client(member).post(f"{API}/studies/{study.pk}/start/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "queued" and response.json()["progress"]["status"] == "queued"
    again = api_client(member).post(f"{API}/studies/{study.pk}/start/")
    assert again.status_code == 400 and "only a draft can start" in again.json()["status"][0]


def test_start_refuses_a_body(api_client: Any, member: Any, study: Study) -> None:
    response = api_client(member).post(f"{API}/studies/{study.pk}/start/", {"now": True})
    assert response.status_code == 400 and "Unknown field" in response.json()["now"][0]
    assert Study.objects.get(pk=study.pk).status == Status.DRAFT


def test_cancel_with_a_reason(api_client: Any, member: Any, study: Study) -> None:
    set_status(study, Status.RUNNING)
    response = api_client(member).post(f"{API}/studies/{study.pk}/cancel/", {"reason": "wrong data set"})
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["status_reason"]) == ("cancelling", "wrong data set")
    again = api_client(member).post(f"{API}/studies/{study.pk}/cancel/")
    assert again.status_code == 400 and "already" in again.json()["status"][0]


@pytest.mark.parametrize(
    ("action", "body"),
    [("start", {}), ("cancel", {}), ("resume", {}), ("clone", {}), ("cancel", {"reason": "x"})],
)
def test_viewer_cannot_act(api_client: Any, viewer: Any, study: Study, action: str, body: dict[str, Any]) -> None:
    if action == "resume":
        set_status(study, Status.CANCELLED)
    before = Study.objects.get(pk=study.pk).status
    response = api_client(viewer).post(f"{API}/studies/{study.pk}/{action}/", body)
    assert response.status_code == 403, response.content
    assert Study.objects.get(pk=study.pk).status == before and Study.objects.count() == 1


@pytest.mark.parametrize("action", ["cancel", "resume", "clone"])
def test_actions_refuse_unknown_fields(api_client: Any, member: Any, study: Study, action: str) -> None:
    response = api_client(member).post(f"{API}/studies/{study.pk}/{action}/", {"force": True})
    assert response.status_code == 400 and "Unknown field" in response.json()["force"][0]


@pytest.mark.parametrize("status", [Status.CANCELLED, Status.FAILED])
def test_resume_queues_a_stopped_study_for_the_rest_of_its_budget(
    api_client: Any, member: Any, study: Study, status: str
) -> None:
    for number in range(2):
        make_trial(study, number, value=0.5)
    Study.objects.filter(pk=study.pk).update(
        status=status, status_reason="stopped", final_status=Status.FAILED, finished_at=timezone.now()
    )
    response = api_client(member).post(f"{API}/studies/{study.pk}/resume/")
    assert response.status_code == 200, response.content
    study.refresh_from_db()
    assert (study.status, study.status_reason, study.final_status, study.finished_at) == (Status.QUEUED, "", "", None)
    assert study.n_trials == 5 and study.queued_at is not None
    assert "3 more trials" in StudyLogEntry.objects.filter(study=study).last().message
    assert AuditEntry.objects.get(action="study.resume").details == {"from": status, "n_trials": 5}


def test_resume_a_completed_study_needs_a_larger_budget(api_client: Any, member: Any, study: Study) -> None:
    for number in range(5):
        make_trial(study, number, value=0.5)
    set_status(study, Status.COMPLETED)
    client = api_client(member)
    refused = client.post(f"{API}/studies/{study.pk}/resume/")
    assert refused.status_code == 400 and "larger n_trials" in refused.json()["n_trials"][0]
    same = client.post(f"{API}/studies/{study.pk}/resume/", {"n_trials": 5})
    assert same.status_code == 400 and "n_trials" in same.json()
    smaller = client.post(f"{API}/studies/{study.pk}/resume/", {"n_trials": 3})
    assert smaller.status_code == 400 and "only grow" in smaller.json()["n_trials"][0]
    bad = client.post(f"{API}/studies/{study.pk}/resume/", {"n_trials": 0})
    assert bad.status_code == 400 and "n_trials" in bad.json()
    resumed = client.post(f"{API}/studies/{study.pk}/resume/", {"n_trials": 8})
    assert resumed.status_code == 200 and resumed.json()["n_trials"] == 8 and resumed.json()["status"] == "queued"


def test_resume_a_cancelled_study_with_its_budget_spent_needs_more(api_client: Any, member: Any, study: Study) -> None:
    for number in range(5):
        make_trial(study, number, state="FAIL")
    set_status(study, Status.CANCELLED)
    response = api_client(member).post(f"{API}/studies/{study.pk}/resume/")
    assert response.status_code == 400 and "has run 5 of its 5" in response.json()["n_trials"][0]
    assert api_client(member).post(f"{API}/studies/{study.pk}/resume/", {"n_trials": 6}).status_code == 200


@pytest.mark.parametrize("status", [Status.DRAFT, Status.QUEUED, Status.RUNNING, Status.CANCELLING])
def test_resume_refuses_a_study_that_is_not_stopped(api_client: Any, member: Any, study: Study, status: str) -> None:
    set_status(study, status)
    response = api_client(member).post(f"{API}/studies/{study.pk}/resume/")
    assert response.status_code == 400 and "can be resumed" in response.json()["status"][0]


def test_clone_copies_settings_into_a_new_draft_with_a_unique_name(api_client: Any, member: Any, study: Study) -> None:
    Study.objects.filter(pk=study.pk).update(search_space={"epochs": 2}, seed=11)
    set_status(study, Status.COMPLETED)
    make_trial(study, 0, value=0.5)
    client = api_client(member)
    first = client.post(f"{API}/studies/{study.pk}/clone/")
    second = client.post(f"{API}/studies/{study.pk}/clone/")
    assert first.status_code == second.status_code == 201, first.content
    assert [first.json()["name"], second.json()["name"]] == ["cnn (copy)", "cnn (copy 2)"]
    clone = Study.objects.get(pk=first.json()["id"])
    assert (clone.status, clone.n_trials, clone.max_epochs, clone.seed) == (Status.DRAFT, 5, 3, 11)
    assert clone.search_space == Study.objects.get(pk=study.pk).search_space
    assert clone.created_by == member and not clone.trials.exists()
    assert AuditEntry.objects.filter(action="study.clone").count() == 2


def test_clone_with_a_name(api_client: Any, member: Any, study: Study) -> None:
    client = api_client(member)
    named = client.post(f"{API}/studies/{study.pk}/clone/", {"name": "cnn v2"})
    assert named.status_code == 201 and named.json()["name"] == "cnn v2"
    taken = client.post(f"{API}/studies/{study.pk}/clone/", {"name": "cnn v2"})
    assert taken.status_code == 400 and "already exists" in taken.json()["name"][0]
    blank = client.post(f"{API}/studies/{study.pk}/clone/", {"name": ""})
    assert blank.status_code == 400 and "name" in blank.json()


# --- progress and log ---------------------------------------------------------------------------


def test_progress_is_computed_when_none_was_stored(api_client: Any, viewer: Any, study: Study) -> None:
    make_trial(study, 0, value=0.7, accuracy=0.7)
    make_trial(study, 1, state="RUNNING", progress={"epoch": 1, "epochs": 3, "fraction": 0.5})
    body = api_client(viewer).get(f"{API}/studies/{study.pk}/progress/").json()
    assert (body["complete"], body["running"], body["best_trial"], body["best_value"]) == (1, 1, 0, 0.7)
    assert body["running_trials"] == [{"number": 1, "epoch": 1, "epochs": 3, "fraction": 0.5}]


def test_progress_answers_the_stored_snapshot(api_client: Any, viewer: Any, study: Study) -> None:
    Study.objects.filter(pk=study.pk).update(progress={"version": 1, "study_id": study.pk, "finished": 42})
    assert api_client(viewer).get(f"{API}/studies/{study.pk}/progress/").json()["finished"] == 42


def test_log_is_oldest_first_filtered_and_pollable(api_client: Any, viewer: Any, study: Study) -> None:
    first = study_log(study=study, message="Queued.")
    study_log(study=study, message="Trial failed", level=LogLevel.ERROR, trial_number=0, details="Traceback")
    study_log(study=study, message="Trial complete", trial_number=1)
    client = api_client(viewer)
    everything = client.get(f"{API}/studies/{study.pk}/log/").json()
    assert [e["message"] for e in everything["results"]] == ["Queued.", "Trial failed", "Trial complete"]
    errors = client.get(f"{API}/studies/{study.pk}/log/", {"level": "error"}).json()["results"]
    assert [(e["level"], e["trial_number"], e["details"]) for e in errors] == [("error", 0, "Traceback")]
    newer = client.get(f"{API}/studies/{study.pk}/log/", {"after": first.pk}).json()["results"]
    assert [e["message"] for e in newer] == ["Trial failed", "Trial complete"]
    page = client.get(f"{API}/studies/{study.pk}/log/", {"page_size": 2, "page": 2}).json()
    assert page["count"] == 3 and [e["message"] for e in page["results"]] == ["Trial complete"]


@pytest.mark.parametrize(("param", "value", "says"), [("level", "debug", "info, warning, error"), ("after", "x", "valid integer")])
def test_log_refuses_bad_filters(api_client: Any, viewer: Any, study: Study, param: str, value: str, says: str) -> None:
    response = api_client(viewer).get(f"{API}/studies/{study.pk}/log/", {param: value})
    assert response.status_code == 400 and says in response.json()[param][0]


# --- a study's trials ---------------------------------------------------------------------------


@pytest.fixture
def trials(study: Study) -> list[Trial]:
    start = timezone.now() - timedelta(hours=1)
    rows = [
        # number, state, value, seconds
        (0, "COMPLETE", 0.6, 50),
        (1, "COMPLETE", 0.9, 10),
        (2, "PRUNED", None, 5),
        (3, "FAIL", None, 30),
        (4, "RUNNING", None, None),
    ]
    return [
        make_trial(
            study,
            number,
            state=state,
            value=value,
            datetime_start=start,
            datetime_complete=start + timedelta(seconds=seconds) if seconds is not None else None,
        )
        for number, state, value, seconds in rows
    ]


def test_trial_list_has_the_fields_and_links(api_client: Any, viewer: Any, study: Study, trials: list[Trial]) -> None:
    response = api_client(viewer).get(f"{API}/studies/{study.pk}/trials/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 5 and [t["number"] for t in body["results"]] == [0, 1, 2, 3, 4]
    first = body["results"][0]
    assert set(first) == {
        "id", "number", "state", "value", "accuracy", "health_score", "total_score", "params", "param_count",
        "outcome", "error_message", "datetime_start", "datetime_complete", "duration_s", "url", "page",
    }
    assert first["duration_s"] == 50.0 and body["results"][4]["duration_s"] is None
    assert first["url"] == f"http://localhost{API}/trials/{trials[0].pk}/"
    assert first["page"] == f"/studies/{study.pk}/trials/0/"


@pytest.mark.parametrize(
    ("ordering", "numbers"),
    [
        ("value", [0, 1, 2, 3, 4]),
        ("-value", [1, 0, 2, 3, 4]),
        ("number", [0, 1, 2, 3, 4]),
        ("-number", [4, 3, 2, 1, 0]),
        ("duration", [2, 1, 3, 0, 4]),
        ("-duration", [0, 3, 1, 2, 4]),
    ],
)
def test_trial_list_ordering(api_client: Any, viewer: Any, study: Study, trials: list[Trial], ordering: str, numbers: list[int]) -> None:
    body = api_client(viewer).get(f"{API}/studies/{study.pk}/trials/", {"ordering": ordering}).json()
    assert [t["number"] for t in body["results"]] == numbers


@pytest.mark.parametrize(("state", "numbers"), [("COMPLETE", [0, 1]), ("PRUNED", [2]), ("FAIL", [3]), ("RUNNING", [4]), ("WAITING", [])])
def test_trial_list_state_filter(api_client: Any, viewer: Any, study: Study, trials: list[Trial], state: str, numbers: list[int]) -> None:
    body = api_client(viewer).get(f"{API}/studies/{study.pk}/trials/", {"state": state}).json()
    assert [t["number"] for t in body["results"]] == numbers


@pytest.mark.parametrize(("param", "value"), [("state", "DONE"), ("ordering", "accuracy"), ("ordering", "-params")])
def test_trial_list_refuses_bad_filters_listing_the_allowed(
    api_client: Any, viewer: Any, study: Study, param: str, value: str
) -> None:
    response = api_client(viewer).get(f"{API}/studies/{study.pk}/trials/", {param: value})
    assert response.status_code == 400
    message = response.json()[param][0]
    assert ("COMPLETE, PRUNED" in message) if param == "state" else ("value, -value, number" in message)


def test_trial_list_is_paginated(api_client: Any, viewer: Any, study: Study, trials: list[Trial]) -> None:
    body = api_client(viewer).get(f"{API}/studies/{study.pk}/trials/", {"page_size": 2, "page": 3, "ordering": "-number"}).json()
    assert body["count"] == 5 and [t["number"] for t in body["results"]] == [0] and body["next"] is None
    assert api_client(viewer).get(f"{API}/studies/{study.pk}/trials/", {"page": 9}).status_code == 404


def test_trial_list_shows_only_this_studys_trials(api_client: Any, viewer: Any, workspace: Any, member: Any, study: Study) -> None:
    other = study_create(user=member, workspace=workspace, name="other")
    make_trial(other, 0, value=0.1)
    assert api_client(viewer).get(f"{API}/studies/{study.pk}/trials/").json()["count"] == 0


def test_non_finite_values_answer_null(api_client: Any, viewer: Any, study: Study) -> None:
    make_trial(study, 0, value=float("inf"), accuracy=float("nan"))
    response = api_client(viewer).get(f"{API}/studies/{study.pk}/trials/")
    assert response.status_code == 200
    assert (response.json()["results"][0]["value"], response.json()["results"][0]["accuracy"]) == (None, None)


# --- best model ---------------------------------------------------------------------------------


def _model(tmp_path: Path, study: Study, number: int, content: bytes) -> str:
    folder = tmp_path / "studies" / str(study.pk) / "trials" / str(number)
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(content)
    return str(folder / "model.keras")


def test_best_model_downloads_the_best_complete_trials_file(
    api_client: Any, viewer: Any, study: Study, tmp_path: Path, settings: Any
) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    make_trial(study, 0, value=0.5, artifacts={"model": _model(tmp_path, study, 0, b"worse")})
    make_trial(study, 1, value=0.9, artifacts={"model": _model(tmp_path, study, 1, b"best model bytes")})
    make_trial(study, 2, state="RUNNING")
    response = api_client(viewer).get(f"{API}/studies/{study.pk}/best-model/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"best model bytes"
    assert response["Content-Disposition"] == f'attachment; filename="study-{study.pk}-trial-1.keras"'
    assert str(tmp_path) not in response["Content-Disposition"]


def test_best_model_is_404_with_a_reason(api_client: Any, viewer: Any, study: Study, tmp_path: Path, settings: Any) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    client = api_client(viewer)
    none = client.get(f"{API}/studies/{study.pk}/best-model/")
    assert none.status_code == 404 and "no completed trial" in none.json()["detail"]
    make_trial(study, 0, value=0.9)
    not_kept = client.get(f"{API}/studies/{study.pk}/best-model/")
    assert not_kept.status_code == 404 and "no model file" in not_kept.json()["detail"]


def test_best_model_never_serves_a_file_outside_media_root(
    api_client: Any, viewer: Any, study: Study, tmp_path: Path, settings: Any
) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    outside = tmp_path / "secret.keras"
    outside.write_bytes(b"secret")
    make_trial(study, 0, value=0.9, artifacts={"model": str(tmp_path / "media" / ".." / "secret.keras")})
    response = api_client(viewer).get(f"{API}/studies/{study.pk}/best-model/")
    assert response.status_code == 404 and b"secret" not in response.content
    assert str(tmp_path) not in json.dumps(response.json())
