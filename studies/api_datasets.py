"""Data sets API (docs/api.md):

- ``GET /api/v1/datasets/``: every catalog data set, whether it is available offline now
  and how to make it so. One list, not paginated (it is short and fixed).
- ``GET, POST /api/v1/workspaces/<slug>/uploads/``: a workspace's own data sets (viewers
  read, members upload: multipart ``name``, ``file``, optional ``kind``).
- ``GET, DELETE /api/v1/workspaces/<slug>/uploads/<id>/``.

Another workspace's uploads are a 404 for every method; server paths are never shown.
"""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import path
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Role, Workspace
from accounts.selectors import workspace_get
from accounts.services import require_role
from accounts.api_common import StrictSerializer, api_url
from studies.models import DatasetUpload, TaskKind
from studies.uploads import FORMATS, upload_create, upload_delete, upload_get, upload_list
from workers.engine import datasets as engine_datasets
from workers.engine.catalog import DATASETS, DatasetInfo

# --- the catalog ------------------------------------------------------------------------------

def dataset_availability(info: DatasetInfo) -> dict[str, Any]:
    """Whether ``info`` loads offline on this server now, and how to make it so. Keras sets
    need their files in the Keras cache (``$KERAS_HOME/datasets``), GTSRB its folder there;
    each worker machine has its own cache."""
    if info.bundled:
        return {"available": True, "missing_files": [], "how_to_get": "Bundled with scikit-learn: always available."}
    cache = "$KERAS_HOME/datasets (default ~/.keras/datasets) on every worker machine"
    if info.name == "gtsrb":
        available = (engine_datasets.keras_cache_dir() / "gtsrb").is_dir()
        how = (
            "Downloaded on first use from sid.erda.dk (the worker needs internet access), or unpack "
            f"{engine_datasets.GTSRB_LAYOUT} into the folder gtsrb under {cache}."
        )
        return {"available": available, "missing_files": [] if available else ["gtsrb/"], "how_to_get": how}
    missing = engine_datasets.missing_cache_files(info.name)
    files = ", ".join(engine_datasets.KERAS_CACHE_FILES[info.name][0])
    how = f"Downloaded by Keras on first use (the worker needs internet access), or put {files} in {cache}."
    return {"available": not missing, "missing_files": missing, "how_to_get": how}


def dataset_catalog() -> list[dict[str, Any]]:
    return [
        {
            "name": info.name,
            "label": info.title,
            "kind": info.kind,
            "classes": info.n_classes,
            "input_shape": list(info.input_shape),
            "bundled": info.bundled,
            **dataset_availability(info),
        }
        for info in DATASETS.values()
    ]


@extend_schema_field({"type": "string", "enum": [kind.value for kind in TaskKind]})
class KindField(serializers.ChoiceField):
    """image or text. Inline in the schema: the studies' TaskKindEnum component is the same
    choice set under another name, which drf-spectacular warns about."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=TaskKind.choices, **kwargs)


class DatasetSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="What a study's `dataset` takes.")
    label = serializers.CharField()
    kind = KindField()
    classes = serializers.IntegerField()
    input_shape = serializers.ListField(
        child=serializers.IntegerField(), help_text="Per sample: (H, W, C) for images, (sequence_length,) for text."
    )
    bundled = serializers.BooleanField(help_text="Ships with an installed package.")
    available = serializers.BooleanField(help_text="Loads without a download on this server now.")
    missing_files = serializers.ListField(
        child=serializers.CharField(), help_text="Files still needed in the Keras cache folder."
    )
    how_to_get = serializers.CharField(help_text="How to make the data set available.")


class DatasetListView(APIView):
    @extend_schema(
        operation_id="datasets_list",
        tags=["datasets"],
        summary="The catalog of data sets",
        description="Every built-in data set, whether it is available offline on this server now, "
        "and how to make it so. One list, not paginated. A workspace's own files are under "
        "/workspaces/<slug>/uploads/ (dataset `upload` with `upload` = the upload's id).",
        responses=DatasetSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        return Response(DatasetSerializer(dataset_catalog(), many=True).data)


# --- uploads ----------------------------------------------------------------------------------

class UploadSummarySerializer(serializers.Serializer):
    samples = serializers.IntegerField()
    classes = serializers.IntegerField()
    class_names = serializers.ListField(child=serializers.CharField())
    shape = serializers.ListField(
        child=serializers.IntegerField(), help_text="Per sample: (H, W, C) for images, (sequence_length,) for text."
    )


class UploadSerializer(serializers.ModelSerializer):
    """An upload as clients see it: never its server path."""

    kind = KindField(read_only=True)
    summary = UploadSummarySerializer(read_only=True)
    created_by = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetUpload
        fields = ["id", "name", "kind", "size_bytes", "original_filename", "summary", "created_by", "created_at", "url"]
        read_only_fields = fields

    def get_created_by(self, upload: DatasetUpload) -> str | None:
        return upload.created_by.get_username() if upload.created_by else None

    def get_url(self, upload: DatasetUpload) -> str:
        return api_url(self.context, "api-upload-detail", slug=upload.workspace.slug, upload_id=upload.pk)


class UploadCreateSerializer(StrictSerializer):
    """The multipart form of a new upload; fields not listed here are refused."""

    name = serializers.CharField(max_length=200, help_text="Unique in the workspace.")
    kind = KindField(
        required=False,
        error_messages={"invalid_choice": '"{input}" is not allowed; choose one of image, text.'},
        help_text="image (.npz) or text (.csv); defaults to what the file holds.",
    )
    file = serializers.FileField(help_text=f"{FORMATS}; at most HPO_UPLOAD_MAX_BYTES.")


class _WorkspaceUploads:
    """The workspace named in the URL, for members only (404 for everyone else)."""

    request: Request
    kwargs: dict[str, Any]

    def workspace(self) -> Workspace:
        return workspace_get(user=self.request.user, slug=self.kwargs["slug"])

    def uploads(self) -> QuerySet[DatasetUpload]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return DatasetUpload.objects.none()
        return upload_list(user=self.request.user, workspace=self.workspace())


@extend_schema(tags=["uploads"])
class UploadListView(_WorkspaceUploads, generics.ListCreateAPIView):  # type: ignore[misc]
    serializer_class = UploadSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[DatasetUpload]:
        return self.uploads()

    @extend_schema(
        summary="Upload a data set",
        description=f"Multipart form: name, file ({FORMATS}), optional kind. The file is validated "
        "as training would read it; a refusal names the problem. Members and above.",
        request={"multipart/form-data": UploadCreateSerializer},
        responses={201: UploadSerializer},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workspace = self.workspace()
        # A viewer is refused before the body is parsed (a body over HPO_UPLOAD_MAX_BYTES
        # never gets here: hpo_platform.middleware answers 413).
        require_role(user=request.user, workspace=workspace, at_least=Role.MEMBER)
        form = UploadCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        upload = upload_create(user=request.user, workspace=workspace, **form.validated_data)
        return Response(self.get_serializer(upload).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["uploads"])
class UploadDetailView(_WorkspaceUploads, generics.RetrieveDestroyAPIView):  # type: ignore[misc]
    serializer_class = UploadSerializer

    def get_queryset(self) -> QuerySet[DatasetUpload]:
        return self.uploads()

    def get_object(self) -> DatasetUpload:
        upload = upload_get(user=self.request.user, workspace=self.workspace(), upload_id=self.kwargs["upload_id"])
        self.check_object_permissions(self.request, upload)
        return upload

    @extend_schema(
        summary="Delete an upload",
        description="Members and above; refused (400) while a queued or running study uses it.",
        responses={204: None},
    )
    def delete(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        upload_delete(user=request.user, upload=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


urlpatterns = [
    path("datasets/", DatasetListView.as_view(), name="api-datasets"),
    path("workspaces/<str:slug>/uploads/", UploadListView.as_view(), name="api-upload-list"),
    path("workspaces/<str:slug>/uploads/<int:upload_id>/", UploadDetailView.as_view(), name="api-upload-detail"),
]
