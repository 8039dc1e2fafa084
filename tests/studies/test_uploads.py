"""Uploads: the services (validated with the engine's upload reader, nothing stored on a
refusal, deletion refused while a study trains on it), the API's roles and scoping, and
studies that train on an upload (the server sets the path; a client's path is refused)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.errors import NotFound, PermissionDenied, ValidationError
from accounts.models import AuditEntry
from studies.models import DatasetUpload, Status, Study
from studies.services import study_clone, study_create
from studies.uploads import upload_create, upload_delete
from workers.engine.datasets import load_dataset


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def npz_bytes(n: int = 20, *, y: bool = True) -> bytes:
    rng = np.random.default_rng(0)
    arrays = {"x": rng.integers(0, 256, size=(n, 6, 6), dtype=np.uint8)}
    if y:
        arrays["y"] = np.arange(n) % 3
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def csv_bytes(n: int = 12) -> bytes:
    rows = [f'"a {"good" if i % 2 else "bad"} film, number {i}",{"pos" if i % 2 else "neg"}' for i in range(n)]
    return ("text,label\n" + "\n".join(rows) + "\n").encode()


def npz_file(name: str = "shapes.npz", content: bytes | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, npz_bytes() if content is None else content)


def stored_files(media_root: Path) -> list[Path]:
    folder = media_root / "uploads"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- services -------------------------------------------------------------------------------

def test_member_uploads_a_valid_npz(workspace: Any, member: Any, media_root: Path) -> None:
    upload = upload_create(user=member, workspace=workspace, name="shapes", file=npz_file())
    assert (upload.kind, upload.original_filename, upload.created_by) == ("image", "shapes.npz", member)
    assert upload.summary == {"samples": 20, "classes": 3, "class_names": ["0", "1", "2"], "shape": [6, 6, 1]}
    path = Path(upload.file.path)
    assert path.is_file() and path.parent == media_root / "uploads" / str(workspace.pk)
    assert path.read_bytes() == npz_bytes() and upload.size_bytes == len(npz_bytes())
    assert stored_files(media_root) == [path]  # no partial file left
    assert AuditEntry.objects.filter(action="upload.create", target_id=str(upload.pk)).exists()


def test_member_uploads_a_valid_csv(workspace: Any, member: Any) -> None:
    upload = upload_create(
        user=member, workspace=workspace, name="reviews", kind="text", file=SimpleUploadedFile("r.csv", csv_bytes())
    )
    assert upload.kind == "text"
    assert upload.summary["samples"] == 12 and upload.summary["class_names"] == ["neg", "pos"]


@pytest.mark.parametrize(
    ("filename", "content", "field", "says"),
    [
        ("shapes.npz", npz_bytes(y=False), "file", "has no array y"),
        ("shapes.npz", b"not a zip at all", "file", "not a readable .npz"),
        ("shapes.npz", npz_bytes(n=4), "file", "at least 10 are needed"),
        ("reviews.csv", b"words,tag\nhello,1\n", "file", "text,label"),
        ("reviews.txt", b"text,label\n", "file", "allowed: .npz"),
        ("empty.csv", b"", "file", "empty"),
    ],
)
def test_bad_file_is_refused_naming_the_problem_and_nothing_is_kept(
    workspace: Any, member: Any, media_root: Path, filename: str, content: bytes, field: str, says: str
) -> None:
    with pytest.raises(ValidationError) as error:
        upload_create(user=member, workspace=workspace, name="bad", file=SimpleUploadedFile(filename, content))
    assert error.value.field == field and says in error.value.message
    assert ".partial" not in error.value.message and str(media_root) not in error.value.message
    assert not DatasetUpload.objects.exists() and stored_files(media_root) == []


def test_too_large_file_is_refused_naming_the_limit(workspace: Any, member: Any, settings: Any, media_root: Path) -> None:
    settings.HPO_UPLOAD_MAX_BYTES = 1000
    with pytest.raises(ValidationError) as error:
        upload_create(user=member, workspace=workspace, name="big", file=npz_file())
    assert error.value.field == "file" and "the limit is 1000 bytes" in error.value.message
    assert not DatasetUpload.objects.exists() and stored_files(media_root) == []


def test_kind_must_match_the_file(workspace: Any, member: Any, media_root: Path) -> None:
    with pytest.raises(ValidationError) as error:
        upload_create(user=member, workspace=workspace, name="x", kind="text", file=npz_file())
    assert error.value.field == "kind" and "must be 'image'" in error.value.message
    with pytest.raises(ValidationError) as error:
        upload_create(user=member, workspace=workspace, name="x", kind="audio", file=npz_file())
    assert error.value.field == "kind" and "image, text" in error.value.message
    assert stored_files(media_root) == []


def test_duplicate_name_is_refused(workspace: Any, member: Any, media_root: Path) -> None:
    upload_create(user=member, workspace=workspace, name="shapes", file=npz_file())
    with pytest.raises(ValidationError) as error:
        upload_create(user=member, workspace=workspace, name=" shapes ", file=npz_file())
    assert error.value.field == "name" and "already exists" in error.value.message
    assert len(stored_files(media_root)) == 1


def test_viewer_and_outsider_cannot_upload(workspace: Any, viewer: Any, outsider: Any, media_root: Path) -> None:
    with pytest.raises(PermissionDenied):
        upload_create(user=viewer, workspace=workspace, name="x", file=npz_file())
    with pytest.raises(NotFound):
        upload_create(user=outsider, workspace=workspace, name="x", file=npz_file())
    assert stored_files(media_root) == []


def test_delete_removes_row_and_file(
    workspace: Any, member: Any, django_capture_on_commit_callbacks: Any
) -> None:
    upload = upload_create(user=member, workspace=workspace, name="shapes", file=npz_file())
    path = Path(upload.file.path)
    with django_capture_on_commit_callbacks(execute=True):
        upload_delete(user=member, upload=upload)
    assert not DatasetUpload.objects.exists() and not path.exists()


def test_delete_is_refused_while_a_running_study_uses_it(
    workspace: Any, member: Any, django_capture_on_commit_callbacks: Any
) -> None:
    upload = upload_create(user=member, workspace=workspace, name="shapes", file=npz_file())
    study = study_create(user=member, workspace=workspace, name="on-shapes", dataset="upload", upload_id=upload.pk)
    Study.objects.filter(pk=study.pk).update(status=Status.RUNNING)
    with pytest.raises(ValidationError) as error:
        upload_delete(user=member, upload=upload)
    assert error.value.field == "upload" and "'on-shapes' (running)" in error.value.message
    assert Path(upload.file.path).exists()

    Study.objects.filter(pk=study.pk).update(status=Status.COMPLETED)
    with django_capture_on_commit_callbacks(execute=True):
        upload_delete(user=member, upload=upload)
    assert not DatasetUpload.objects.exists()


# --- studies on uploads ---------------------------------------------------------------------

def test_study_on_an_upload_trains_from_the_stored_file(workspace: Any, member: Any) -> None:
    upload = upload_create(user=member, workspace=workspace, name="shapes", file=npz_file())
    study = study_create(
        user=member, workspace=workspace, name="s", dataset="upload", upload_id=upload.pk, max_epochs=2
    )
    assert study.dataset == "upload" and study.task_kind == "image"
    assert study.dataset_options == {"path": upload.file.path, "upload_id": upload.pk}
    data = load_dataset(study.dataset, seed=1, options=study.dataset_options)  # what a trial loads
    assert data.kind == "image" and data.n_classes == 3 and data.input_shape == (6, 6, 1)
    assert len(data.x_train) + len(data.x_val) == 20


def test_text_upload_makes_a_text_study(workspace: Any, member: Any) -> None:
    upload = upload_create(user=member, workspace=workspace, name="r", file=SimpleUploadedFile("r.csv", csv_bytes()))
    study = study_create(
        user=member, workspace=workspace, name="s", dataset="upload", upload_id=upload.pk,
        dataset_options={"sequence_length": 50},
    )
    assert study.task_kind == "text"
    assert study.dataset_options == {"sequence_length": 50, "path": upload.file.path, "upload_id": upload.pk}


@pytest.mark.parametrize("with_upload", [True, False])
def test_client_path_is_refused(workspace: Any, member: Any, with_upload: bool) -> None:
    upload = upload_create(user=member, workspace=workspace, name="shapes", file=npz_file())
    with pytest.raises(ValidationError) as error:
        study_create(
            user=member, workspace=workspace, name="s", dataset="upload",
            upload_id=upload.pk if with_upload else None, dataset_options={"path": "/etc/passwd.npz"},
        )
    assert error.value.field == "dataset_options" and "path is not allowed" in error.value.message
    assert not Study.objects.exists()


def test_upload_of_another_workspace_is_refused(workspace: Any, member: Any, outsider: Any) -> None:
    theirs = outsider.memberships.get().workspace
    upload = upload_create(user=outsider, workspace=theirs, name="secret", file=npz_file())
    with pytest.raises(ValidationError) as error:
        study_create(user=member, workspace=workspace, name="s", dataset="upload", upload_id=upload.pk)
    assert error.value.field == "upload" and f"No upload {upload.pk}" in error.value.message


@pytest.mark.parametrize(
    ("dataset", "upload_id", "says"),
    [("upload", None, "needs upload_id"), ("upload", "1", "needs upload_id"), ("digits", 1, "only used with")],
)
def test_upload_and_dataset_must_agree(workspace: Any, member: Any, dataset: str, upload_id: Any, says: str) -> None:
    with pytest.raises(ValidationError) as error:
        study_create(user=member, workspace=workspace, name="s", dataset=dataset, upload_id=upload_id)
    assert error.value.field == "upload" and says in error.value.message


def test_clone_keeps_training_on_the_upload(workspace: Any, member: Any) -> None:
    upload = upload_create(user=member, workspace=workspace, name="shapes", file=npz_file())
    study = study_create(user=member, workspace=workspace, name="s", dataset="upload", upload_id=upload.pk)
    clone = study_clone(user=member, study=study)
    assert clone.dataset_options == study.dataset_options and clone.task_kind == "image"


# --- API --------------------------------------------------------------------------------------

def list_url(workspace: Any) -> str:
    return f"/api/v1/workspaces/{workspace.slug}/uploads/"


def detail_url(workspace: Any, upload: DatasetUpload) -> str:
    return f"/api/v1/workspaces/{workspace.slug}/uploads/{upload.pk}/"


def post(client: Any, workspace: Any, **fields: Any) -> Any:
    return client.post(list_url(workspace), fields, format="multipart")


def test_api_upload_list_and_detail(api_client: Any, member: Any, viewer: Any, workspace: Any, media_root: Path) -> None:
    response = post(api_client(member), workspace, name="shapes", kind="image", file=npz_file())
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "shapes" and body["kind"] == "image" and body["created_by"] == "mia"
    assert body["summary"]["samples"] == 20 and body["url"].endswith(f"/uploads/{body['id']}/")
    assert str(media_root) not in response.content.decode() and "path" not in body

    listed = api_client(viewer).get(list_url(workspace)).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    upload = DatasetUpload.objects.get()
    detail = api_client(viewer).get(detail_url(workspace, upload))
    assert detail.status_code == 200 and detail.json() == body


def test_api_csv_upload_without_kind(api_client: Any, member: Any, workspace: Any) -> None:
    response = post(api_client(member), workspace, name="r", file=SimpleUploadedFile("r.csv", csv_bytes()))
    assert response.status_code == 201 and response.json()["kind"] == "text"


def test_api_bad_file_is_a_400_naming_it(api_client: Any, member: Any, workspace: Any) -> None:
    response = post(api_client(member), workspace, name="bad", file=npz_file(content=npz_bytes(y=False)))
    assert response.status_code == 400
    assert "shapes.npz has no array y" in response.json()["file"][0]


def test_api_too_large_is_refused_naming_the_limit(
    api_client: Any, member: Any, workspace: Any, settings: Any, media_root: Path
) -> None:
    # The body is refused from its Content-Length before it is read (hpo_platform.middleware).
    settings.HPO_UPLOAD_MAX_BYTES = 1024
    response = post(api_client(member), workspace, name="big", file=npz_file())
    assert response.status_code == 413 and "at most 1 KiB" in response.json()["detail"]
    assert not DatasetUpload.objects.exists() and stored_files(media_root) == []


def test_api_refuses_missing_and_unknown_fields(api_client: Any, member: Any, workspace: Any) -> None:
    client = api_client(member)
    response = post(client, workspace, name="x", file=npz_file(), path="/etc")
    assert response.status_code == 400 and "Unknown field" in response.json()["path"][0]
    response = post(client, workspace, name="x")
    assert response.status_code == 400 and "file" in response.json()
    response = post(client, workspace, name="x", kind="audio", file=npz_file())
    assert response.status_code == 400 and "image, text" in response.json()["kind"][0]
    assert not DatasetUpload.objects.exists()


def test_api_viewer_cannot_write(api_client: Any, member: Any, viewer: Any, workspace: Any) -> None:
    upload = upload_create(user=member, workspace=workspace, name="shapes", file=npz_file())
    client = api_client(viewer)
    assert post(client, workspace, name="mine", file=npz_file()).status_code == 403
    assert client.delete(detail_url(workspace, upload)).status_code == 403
    assert DatasetUpload.objects.count() == 1


def test_api_outsider_gets_404_on_every_method(api_client: Any, member: Any, outsider: Any, workspace: Any) -> None:
    upload = upload_create(user=member, workspace=workspace, name="shapes", file=npz_file())
    client = api_client(outsider)
    assert client.get(list_url(workspace)).status_code == 404
    assert post(client, workspace, name="mine", file=npz_file()).status_code == 404
    assert client.get(detail_url(workspace, upload)).status_code == 404
    assert client.delete(detail_url(workspace, upload)).status_code == 404
    # Their own workspace's URL does not reach it either.
    theirs = outsider.memberships.get().workspace
    assert client.get(detail_url(theirs, upload)).status_code == 404
    assert DatasetUpload.objects.count() == 1


def test_api_delete(
    api_client: Any, member: Any, workspace: Any, django_capture_on_commit_callbacks: Any
) -> None:
    upload = upload_create(user=member, workspace=workspace, name="shapes", file=npz_file())
    study = study_create(user=member, workspace=workspace, name="s", dataset="upload", upload_id=upload.pk)
    Study.objects.filter(pk=study.pk).update(status=Status.QUEUED)
    client = api_client(member)
    response = client.delete(detail_url(workspace, upload))
    assert response.status_code == 400 and "in use by the study 's' (queued)" in response.json()["upload"][0]
    Study.objects.filter(pk=study.pk).update(status=Status.CANCELLED)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(detail_url(workspace, upload)).status_code == 204
    assert not Path(upload.file.path).exists()
    assert client.get(detail_url(workspace, upload)).status_code == 404


def test_a_study_made_with_only_upload_id_gets_the_uploads_path(workspace: Any, member: Any) -> None:
    upload = upload_create(user=member, workspace=workspace, name="shapes", file=npz_file())
    study = study_create(user=member, workspace=workspace, name="on-shapes", dataset="upload", upload_id=upload.pk)
    assert study.dataset_options["path"] == upload.file.path
    assert study.dataset_options["upload_id"] == upload.pk
    assert study.task_kind == upload.kind
