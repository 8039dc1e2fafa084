"""A workspace's own data sets: upload, list, delete, and what a study that trains on one gets.

Writes are keyword-only services that check the role first (outsiders get ``NotFound``,
viewers ``PermissionDenied``) and record an audit entry. An upload is validated with the
engine's own upload loader before it is kept, so a file that would fail at training time is
refused at once; a refused or failed upload leaves no file and no row behind.

Files live under ``MEDIA_ROOT/uploads/<workspace id>/`` with server-made names; the path is
only ever handed to the engine (``Study.dataset_options["path"]``), never to clients.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path, PurePath
from typing import Any, Protocol

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from accounts.errors import NotFound, ValidationError
from accounts.models import Role, Workspace
from accounts.selectors import workspace_list
from accounts.services import audit_record, require_role
from studies.models import ACTIVE_STATUSES, DatasetUpload, Study, TaskKind
from workers.engine import datasets as engine_datasets
from workers.engine.catalog import DEFAULT_SEQUENCE_LENGTH, IMAGE, TEXT, UPLOAD

logger = logging.getLogger(__name__)

# What each extension holds (the engine's rule: workers.engine.datasets._load_upload).
KIND_OF_SUFFIX = {".npz": IMAGE, ".csv": TEXT}
FORMATS = ".npz (images: arrays x and y, optional class_names) or .csv (text: header text,label)"
MAX_CLASS_NAMES = 1000  # kept in the summary; more are counted, not listed


class UploadedFileLike(Protocol):
    """What Django's ``UploadedFile`` offers and the services need."""

    name: str | None
    size: int | None

    def chunks(self, chunk_size: int | None = None) -> Any: ...


# --- reads ------------------------------------------------------------------------------------

def upload_list(*, user: AbstractBaseUser, workspace: Workspace) -> QuerySet[DatasetUpload]:
    return DatasetUpload.objects.filter(
        workspace__in=workspace_list(user=user), workspace=workspace
    ).select_related("workspace", "created_by")


def upload_get(*, user: AbstractBaseUser, workspace: Workspace, upload_id: int) -> DatasetUpload:
    upload = upload_list(user=user, workspace=workspace).filter(pk=upload_id).first()
    if upload is None:
        raise NotFound(f"No upload {upload_id} in {workspace.name!r}.")
    return upload


def size_text(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


# --- writes -----------------------------------------------------------------------------------

def upload_create(
    *,
    user: AbstractBaseUser,
    workspace: Workspace,
    name: str,
    file: UploadedFileLike,
    kind: str | None = None,
) -> DatasetUpload:
    """Validate ``file`` (a .npz of images or a .csv of texts) and keep it as ``name`` in
    ``workspace``; members and above may. ``kind`` defaults to what the file holds and must
    match it when given. Size is capped by ``settings.HPO_UPLOAD_MAX_BYTES``. On any refusal
    nothing is stored. Not idempotent: each call stores a new file (the name is unique).

    The file is written and checked outside any transaction (it may take seconds, and SQLite
    would hold its write lock all along); only the row and its audit entry are one."""
    require_role(user=user, workspace=workspace, at_least=Role.MEMBER)
    name = _checked_name(workspace, name)
    original = PurePath(str(file.name or "")).name[:255]
    suffix = PurePath(original).suffix.lower()
    if suffix not in KIND_OF_SUFFIX:
        raise ValidationError(
            f"{original or 'The file'} has the extension {suffix or '(none)'!r}; allowed: {FORMATS}.",
            field="file",
        )
    kind = _checked_kind(kind, suffix)
    limit = int(settings.HPO_UPLOAD_MAX_BYTES)
    if file.size is not None and file.size > limit:
        raise too_large_error(original, file.size, limit)

    relative = f"uploads/{workspace.pk}/{uuid.uuid4().hex}{suffix}"
    final = Path(settings.MEDIA_ROOT) / relative
    # The engine reads the extension, so the partial file keeps it.
    partial = final.with_name(f"{final.stem}.partial{suffix}")
    try:
        size = _write(file, partial, limit, original)
        summary = _inspect(partial, kind, limit, original)
        partial.replace(final)
        upload = DatasetUpload(
            workspace=workspace, name=name, kind=kind, size_bytes=size,
            original_filename=original, summary=summary, created_by=user,
        )
        upload.file.name = relative
        try:
            with transaction.atomic():
                upload.save()
                audit_record(
                    actor=user, action="upload.create", target=upload, workspace=workspace,
                    details={"kind": kind, "size_bytes": size, "samples": summary["samples"]},
                )
        except IntegrityError:  # a concurrent upload of the same name won
            raise _duplicate(workspace, name) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        raise
    logger.info("upload %s (%s, %d bytes) stored in workspace %s", upload.pk, kind, size, workspace.pk)
    return upload


@transaction.atomic
def upload_delete(*, user: AbstractBaseUser, upload: DatasetUpload) -> None:
    """Delete an upload and its file (members and above). Refused while a queued, running or
    cancelling study trains on it. The file goes once the deletion has committed."""
    upload = DatasetUpload.objects.select_for_update().select_related("workspace").get(pk=upload.pk)
    require_role(user=user, workspace=upload.workspace, at_least=Role.MEMBER)
    users = studies_using(upload).filter(status__in=ACTIVE_STATUSES)
    busy = list(users.values_list("name", "status")[:5])
    if busy:
        listed = ", ".join(f"{name!r} ({status})" for name, status in busy)
        raise ValidationError(
            f"Upload {upload.name!r} is in use by the study {listed}; cancel it or wait until it "
            "ends, then delete the upload.",
            field="upload",
        )
    path = Path(upload.file.path)
    audit_record(
        actor=user, action="upload.delete", target=upload, workspace=upload.workspace,
        details={"name": upload.name, "kind": upload.kind},
    )
    upload.delete()
    transaction.on_commit(lambda: path.unlink(missing_ok=True))


def studies_using(upload: DatasetUpload) -> QuerySet[Study]:
    """The studies that train on ``upload`` (matched by the path the engine is given)."""
    return Study.objects.filter(
        workspace_id=upload.workspace_id, dataset=UPLOAD, dataset_options__path=upload.file.path
    )


def study_upload_options(
    *,
    workspace: Workspace,
    dataset: str,
    upload_id: Any,
    dataset_options: Any,
) -> tuple[str | None, Any]:
    """For ``study_create``: the task kind of the upload a study trains on (``None`` when the
    data set is not an upload) and the data set options with the upload's server path set.

    A client never chooses the path: the upload must belong to ``workspace``, and a path in
    ``dataset_options`` is refused unless it is that upload's own (a clone carries it, with
    ``upload_id``, in the options it copies)."""
    if dataset_options is None:
        dataset_options = {}
    options = dataset_options if isinstance(dataset_options, dict) else None
    if dataset != UPLOAD:
        if upload_id is not None:
            raise ValidationError(
                f"An upload is only used with dataset {UPLOAD!r}; got dataset {dataset!r}.", field="upload"
            )
        return None, dataset_options
    if upload_id is None and options is not None:
        upload_id = options.get("upload_id")
    path_refused = ValidationError(
        "dataset_options.path is not allowed: the server sets it from the upload; give upload_id instead.",
        field="dataset_options",
    )
    if upload_id is None and options is not None and "path" in options:
        raise path_refused
    if isinstance(upload_id, bool) or not isinstance(upload_id, int):
        raise ValidationError(
            f"dataset {UPLOAD!r} needs upload_id, the id of one of {workspace.name!r}'s uploads; "
            f"got {upload_id!r}.",
            field="upload",
        )
    upload = DatasetUpload.objects.filter(pk=upload_id, workspace=workspace).first()
    if upload is None:
        raise ValidationError(
            f"No upload {upload_id} in {workspace.name!r}; use one listed under "
            f"/api/v1/workspaces/{workspace.slug}/uploads/.",
            field="upload",
        )
    if options is None:
        return upload.kind, dataset_options  # study_create names the problem
    if "path" in options and options["path"] != upload.file.path:
        raise path_refused
    return upload.kind, {**options, "path": upload.file.path, "upload_id": upload.pk}


# --- helpers ----------------------------------------------------------------------------------

def _checked_name(workspace: Workspace, name: Any) -> str:
    name = str(name or "").strip()
    if not name or len(name) > 200:
        raise ValidationError("An upload needs a name of 1 to 200 characters.", field="name")
    if DatasetUpload.objects.filter(workspace=workspace, name=name).exists():
        raise _duplicate(workspace, name)
    return name


def _duplicate(workspace: Workspace, name: str) -> ValidationError:
    return ValidationError(
        f"An upload named {name!r} already exists in {workspace.name!r}; choose another name.", field="name"
    )


def _checked_kind(kind: str | None, suffix: str) -> str:
    expected = KIND_OF_SUFFIX[suffix]
    if kind in (None, ""):
        return expected
    allowed = [k.value for k in TaskKind]
    if kind not in allowed:
        raise ValidationError(f"{kind!r} is not allowed; choose one of {', '.join(allowed)}.", field="kind")
    if kind != expected:
        raise ValidationError(
            f"A {suffix} file holds {expected} data, so kind must be {expected!r} (or left out); got {kind!r}.",
            field="kind",
        )
    return expected


def too_large_error(original: str, size: int, limit: int) -> ValidationError:
    return ValidationError(
        f"{original or 'The file'} is {size_text(size)}; the limit is {size_text(limit)} "
        f"(HPO_UPLOAD_MAX_BYTES = {limit} bytes).",
        field="file",
    )


def _write(file: UploadedFileLike, target: Path, limit: int, original: str) -> int:
    """Copy the upload to ``target``, stopping as soon as it passes ``limit``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with target.open("wb") as out:
        for chunk in file.chunks():
            written += len(chunk)
            if written > limit:
                raise too_large_error(original, written, limit)
            out.write(chunk)
    if written == 0:
        raise ValidationError(f"{original} is empty; expected {FORMATS}.", field="file")
    return written


def _inspect(path: Path, kind: str, limit: int, original: str) -> dict[str, Any]:
    """The engine's own check of an upload, as a summary; its refusal as a 400 on ``file``.

    Uses the engine's upload reader without building features for text (that would import
    Keras, which the web process never does)."""
    try:
        source = engine_datasets._load_upload(UPLOAD, {"path": str(path), "max_bytes": limit})
        if source.kind == IMAGE:
            x_one, _ = source.features(np.array([0]), np.array([0]))  # one image, for its shape
            shape = [int(d) for d in x_one.shape[1:]]
        else:
            shape = [DEFAULT_SEQUENCE_LENGTH]
    except engine_datasets.DatasetError as error:
        message = str(error).replace(str(path), original).replace(path.name, original)
        raise ValidationError(f"{message}.", field="file") from None
    if source.kind != kind:  # the extension decides both: a guard, not a user path
        raise ValidationError(f"{original} holds {source.kind} data, not {kind}.", field="kind")
    names = [str(n)[:100] for n in source.class_names[:MAX_CLASS_NAMES]]
    return {
        "samples": int(len(source.labels)),
        "classes": int(source.n_classes),
        "class_names": names,
        "shape": shape,
    }
