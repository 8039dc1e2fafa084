"""Trials API (docs/api.md): one trial's detail, cancelling it, and its model download.

A study's trial list (``/studies/<id>/trials/``) lives in ``studies.api`` and uses the
serializers here. Views only translate HTTP: reads go through ``trials.selectors`` (scoped
by the user), the cancel through ``studies.services.trial_cancel`` (which checks the role).
Responses never carry server paths: artifacts are named, and files are served by id.
"""
from __future__ import annotations

import json
import math
from typing import Any

from django.http import FileResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import renderers, serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api_common import StrictSerializer, api_url
from trials.cost import trial_cost_usd
from trials.models import Trial, TrialEpoch
from trials.selectors import trial_get, trial_model_file


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities made ``None``, recursively: strict JSON has no
    such numbers, and Optuna's values, attributes and losses may hold them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


class _FiniteModelSerializer(serializers.ModelSerializer):
    """Answers strict JSON: non-finite numbers anywhere in the output become null."""

    def to_representation(self, instance: Any) -> Any:
        return finite(super().to_representation(instance))


def external_params(trial: Trial) -> dict[str, Any]:
    """Parameter values as the model saw them (a categorical's choice, not its index)."""
    from optuna.distributions import json_to_distribution

    params = {}
    for name, (internal, distribution) in json.loads(trial.params_json).items():
        params[name] = json_to_distribution(distribution).to_external_repr(internal)
    return params


class TrialSerializer(_FiniteModelSerializer):
    """A trial in a study's list."""

    params = serializers.SerializerMethodField()
    duration_s = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    page = serializers.SerializerMethodField()

    class Meta:
        model = Trial
        fields = [
            "id", "number", "state", "value", "accuracy", "health_score", "total_score", "params",
            "param_count", "outcome", "error_message", "datetime_start", "datetime_complete",
            "duration_s", "url", "page",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "additionalProperties": {}})
    def get_params(self, trial: Trial) -> dict[str, Any]:
        return external_params(trial)

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration_s(self, trial: Trial) -> float | None:
        if trial.datetime_start is None or trial.datetime_complete is None:
            return None
        return (trial.datetime_complete - trial.datetime_start).total_seconds()

    def get_url(self, trial: Trial) -> str:
        return api_url(self.context, "api-trial-detail", trial_id=trial.pk)

    def get_page(self, trial: Trial) -> str:
        return f"/studies/{trial.study_id}/trials/{trial.number}/"


class TrialEpochSerializer(_FiniteModelSerializer):
    class Meta:
        model = TrialEpoch
        fields = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
        read_only_fields = fields


class TrialDetailSerializer(TrialSerializer):
    """A trial with everything it produced; artifacts by name only (``model_url`` downloads
    the model when it was kept)."""

    values = serializers.SerializerMethodField()
    intermediate_values = serializers.SerializerMethodField()
    user_attrs = serializers.SerializerMethodField()
    epochs = TrialEpochSerializer(many=True, read_only=True)
    artifacts = serializers.SerializerMethodField()
    model_url = serializers.SerializerMethodField()
    cost_usd = serializers.SerializerMethodField(
        help_text="Dollars for a cloud trial (GPU seconds x HPO_GPU_PRICES for the workspace's GPU type); "
        "0 for a local one; null when no price is known."
    )

    class Meta(TrialSerializer.Meta):
        fields = [
            *TrialSerializer.Meta.fields,
            "study", "values", "intermediate_values", "health_metrics", "architecture", "user_attrs",
            "epochs", "artifacts", "model_url", "executor", "worker", "gpu_seconds", "cost_usd", "progress",
            "cancel_requested",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_cost_usd(self, trial: Trial) -> float | None:
        return trial_cost_usd(trial)

    @extend_schema_field(serializers.ListField(child=serializers.FloatField(allow_null=True), allow_null=True))
    def get_values(self, trial: Trial) -> list[float | None] | None:
        return trial.values

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "number", "nullable": True}})
    def get_intermediate_values(self, trial: Trial) -> dict[str, float | None]:
        return {str(step): value for step, value in sorted(trial.intermediate_values.items())}

    @extend_schema_field({"type": "object", "additionalProperties": {}})
    def get_user_attrs(self, trial: Trial) -> dict[str, Any]:
        return trial.user_attrs

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_artifacts(self, trial: Trial) -> list[str]:
        return sorted(trial.artifacts or {})

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_model_url(self, trial: Trial) -> str | None:
        if not (trial.artifacts or {}).get("model"):
            return None
        return api_url(self.context, "api-trial-model", trial_id=trial.pk)


class NoBodySerializer(StrictSerializer):
    """An action without input: any field sent is refused."""


class BinaryRenderer(renderers.BaseRenderer):
    """Lets a client ask for ``application/octet-stream`` (``Accept`` or ``?format=bin``).
    Errors are rendered as JSON anyway (``DownloadView``)."""

    media_type = "application/octet-stream"
    format = "bin"
    charset = None
    render_style = "binary"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return json.dumps(data).encode() if data is not None else b""


def model_download(trial: Trial, filename: str) -> FileResponse:
    """The trial's kept model file as an attachment; the path comes from the trial row."""
    return FileResponse(
        trial_model_file(trial=trial).open("rb"),
        as_attachment=True,
        filename=filename,
        content_type="application/octet-stream",
    )


DOWNLOAD_RESPONSES = {
    (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The .keras file."),
    (404, "application/json"): OpenApiResponse(description="No such trial, or no model file kept."),
}


class TrialDetailView(GenericAPIView):
    serializer_class = TrialDetailSerializer

    def get(self, request: Request, trial_id: int) -> Response:
        trial = trial_get(user=request.user, trial_id=trial_id)
        return Response(self.get_serializer(trial).data)


class DownloadView(GenericAPIView):
    """A file download: the file itself, or an error as JSON whatever the client accepts."""

    renderer_classes = [renderers.JSONRenderer, BinaryRenderer]

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(response, Response) and response.status_code >= 400:
            request.accepted_renderer = renderers.JSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


class TrialModelView(DownloadView):

    @extend_schema(responses=DOWNLOAD_RESPONSES)
    def get(self, request: Request, trial_id: int) -> FileResponse:
        """Download the trial's model (``.keras``) when it was kept."""
        trial = trial_get(user=request.user, trial_id=trial_id)
        return model_download(trial, f"study-{trial.study_id}-trial-{trial.number}.keras")


urlpatterns = [
    path("trials/<int:trial_id>/", TrialDetailView.as_view(), name="api-trial-detail"),
    path("trials/<int:trial_id>/model/", TrialModelView.as_view(), name="api-trial-model"),
]
