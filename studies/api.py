"""Studies API (docs/api.md): studies, their actions, progress, log, trials and best model.

Views only translate HTTP: reads go through ``studies.selectors`` and ``trials.selectors``
(scoped by the user, so another workspace's study is a 404 for every method), writes
through ``studies.services`` (which check the role: viewers get 403). Input serializers
are strict (unknown fields are a 400) and check types; the services check values.
"""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import FileResponse
from django.urls import path
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.errors import NotFound
from accounts.selectors import workspace_get
from accounts.api_common import StrictSerializer, api_url
from studies.cost import study_cost
from studies.models import Executor, LogLevel, Mode, Pruner, Status, Study, StudyLogEntry
from studies.selectors import study_get, study_log_list, study_progress, study_search
from studies.services import (
    DIRECTIONS,
    LIMITS,
    study_cancel,
    study_clone,
    study_create,
    study_delete,
    study_resume,
    study_start,
    study_update,
    trial_cancel,
)
from trials.api import DOWNLOAD_RESPONSES, DownloadView, NoBodySerializer, TrialDetailSerializer, TrialSerializer, finite, model_download
from trials.models import Trial, TrialState
from trials.selectors import TRIAL_ORDERINGS, trial_best, trial_get, trial_search


def _choice(choices: list[Any], **kwargs: Any) -> serializers.ChoiceField:
    """A choice whose refusal lists what is allowed (``choices``: values, or the model's
    (value, label) pairs, so the schema shares one enum with the model's field)."""
    values = [choice[0] if isinstance(choice, tuple) else choice for choice in choices]
    return serializers.ChoiceField(
        choices=choices,
        error_messages={"invalid_choice": f'"{{input}}" is not allowed; choose one of {", ".join(values)}.'},
        **kwargs,
    )


def _bounded(field: str, **kwargs: Any) -> serializers.IntegerField:
    low, high = LIMITS[field]
    return serializers.IntegerField(min_value=low, max_value=high, **kwargs)


# --- Serializers ----------------------------------------------------------------------------


class StudySerializer(serializers.ModelSerializer):
    """A study as the API shows it: its settings, where it stands and its links. Server paths
    in ``dataset_options`` (an upload's or GTSRB's folder) are left out."""

    workspace = serializers.CharField(source="workspace.slug", read_only=True)
    created_by = serializers.SerializerMethodField()
    dataset_options = serializers.SerializerMethodField()
    upload = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    page = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = [
            "id", "workspace", "name", "dataset", "task_kind", "mode", "directions", "n_trials",
            "max_epochs", "sample_fraction", "seed", "concurrency", "executor", "pruner", "priority",
            "retry_limit", "search_space", "dataset_options", "upload", "health_weights", "status",
            "status_reason", "progress", "created_by", "created_at", "updated_at", "queued_at",
            "started_at", "finished_at", "url", "page",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Study) -> Any:
        return finite(super().to_representation(instance))

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_created_by(self, study: Study) -> str | None:
        return study.created_by.get_username() if study.created_by is not None else None

    @extend_schema_field({"type": "object", "additionalProperties": {}})
    def get_dataset_options(self, study: Study) -> dict[str, Any]:
        return {key: value for key, value in (study.dataset_options or {}).items() if key != "path"}

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_upload(self, study: Study) -> int | None:
        """The upload it trains on (dataset "upload")."""
        return (study.dataset_options or {}).get("upload_id")

    def get_url(self, study: Study) -> str:
        return api_url(self.context, "api-study-detail", study_id=study.pk)

    def get_page(self, study: Study) -> str:
        return f"/studies/{study.pk}/"


class StudySettingsSerializer(StrictSerializer):
    """The settings a member chooses (all optional here; PATCH sends only what changes)."""

    name = serializers.CharField(max_length=200, required=False)
    dataset = serializers.CharField(max_length=64, required=False)
    mode = _choice(Mode.choices, required=False)
    n_trials = _bounded("n_trials", required=False)
    max_epochs = _bounded("max_epochs", required=False)
    sample_fraction = serializers.FloatField(required=False, help_text="Above 0, at most 1.")
    seed = serializers.IntegerField(min_value=0, max_value=2**32 - 1, allow_null=True, required=False)
    concurrency = _bounded("concurrency", required=False)
    executor = _choice(Executor.choices, required=False)
    pruner = _choice(Pruner.choices, required=False)
    priority = _bounded("priority", required=False)
    retry_limit = _bounded("retry_limit", required=False)
    search_space = serializers.DictField(child=serializers.JSONField(), required=False)
    dataset_options = serializers.DictField(child=serializers.JSONField(), required=False)
    health_weights = serializers.DictField(child=serializers.JSONField(), required=False)
    directions = serializers.ListField(
        child=serializers.CharField(), min_length=1, required=False, help_text=f"Each one of: {', '.join(DIRECTIONS)}."
    )
    upload = serializers.IntegerField(
        min_value=1, required=False, help_text='With dataset "upload": the id of one of the workspace\'s uploads.'
    )

    def validate_dataset_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if "path" in options:
            raise serializers.ValidationError(
                "path is not allowed: the server sets it (from `upload`, the id of one of the workspace's uploads)."
            )
        return options


class StudyCreateSerializer(StudySettingsSerializer):
    workspace = serializers.SlugField(help_text="The workspace's slug.")
    name = serializers.CharField(max_length=200)


class StudyCancelSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class StudyResumeSerializer(StrictSerializer):
    n_trials = _bounded(
        "n_trials", required=False, help_text="A larger budget (needed to resume a completed study)."
    )


class StudyCloneSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False, help_text='Default: "<name> (copy)".')


class StudyListQuerySerializer(serializers.Serializer):
    workspace = serializers.SlugField(required=False, help_text="Only this workspace's studies.")
    status = _choice(Status.choices, required=False)


class StudyLogQuerySerializer(serializers.Serializer):
    level = _choice(LogLevel.choices, required=False)
    after = serializers.IntegerField(min_value=0, required=False, help_text="Only entries after this id (polling).")


class StudyTrialQuerySerializer(serializers.Serializer):
    state = _choice(TrialState.choices, required=False)
    ordering = _choice(list(TRIAL_ORDERINGS), required=False, help_text="Default: number.")


class StudyLogEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = StudyLogEntry
        fields = ["id", "created_at", "level", "trial_number", "message", "details"]
        read_only_fields = fields


class RunningTrialSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    epoch = serializers.IntegerField(required=False)
    epochs = serializers.IntegerField(required=False)
    fraction = serializers.FloatField(required=False)


class StudyProgressSerializer(serializers.Serializer):
    """The progress snapshot (docs/events.md)."""

    version = serializers.IntegerField()
    study_id = serializers.IntegerField()
    status = serializers.CharField()
    n_trials = serializers.IntegerField()
    finished = serializers.IntegerField()
    running = serializers.IntegerField()
    waiting = serializers.IntegerField()
    complete = serializers.IntegerField()
    pruned = serializers.IntegerField()
    failed = serializers.IntegerField()
    retried = serializers.IntegerField()
    best_trial = serializers.IntegerField(allow_null=True)
    best_value = serializers.FloatField(allow_null=True)
    best_total_score = serializers.FloatField(allow_null=True)
    best_health = serializers.FloatField(allow_null=True)
    best_accuracy = serializers.FloatField(allow_null=True)
    mode = serializers.CharField()
    average_trial_s = serializers.FloatField(allow_null=True)
    eta_s = serializers.FloatField(allow_null=True)
    running_trials = RunningTrialSerializer(many=True)


def _query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """Validated query parameters (a 400 names the parameter); blank ones are left out."""
    params = {key: value for key, value in request.query_params.items() if value != ""}
    query = serializer_class(data=params)
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


# --- Studies --------------------------------------------------------------------------------


class StudyListView(generics.ListAPIView):
    """Studies of the workspaces you belong to, newest first."""

    serializer_class = StudySerializer

    def get_queryset(self) -> QuerySet[Study]:
        query = _query(StudyListQuerySerializer, self.request)
        return study_search(user=self.request.user, workspace_slug=query.get("workspace"), status=query.get("status"))

    @extend_schema(parameters=[StudyListQuerySerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(request=StudyCreateSerializer, responses={201: StudySerializer})
    def post(self, request: Request) -> Response:
        """Create a draft study (members and above)."""
        body = StudyCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        workspace = workspace_get(user=request.user, slug=fields.pop("workspace"))
        upload_id = fields.pop("upload", None)
        # An empty object, not None: study_upload_options sets an upload's path only into a dict.
        fields.setdefault("dataset_options", {})
        study = study_create(user=request.user, workspace=workspace, upload_id=upload_id, **fields)
        return Response(self.get_serializer(study).data, status=status.HTTP_201_CREATED)


class StudyDetailView(generics.GenericAPIView):
    serializer_class = StudySerializer

    def get(self, request: Request, study_id: int) -> Response:
        return Response(self.get_serializer(study_get(user=request.user, study_id=study_id)).data)

    @extend_schema(request=StudySettingsSerializer, responses=StudySerializer)
    def patch(self, request: Request, study_id: int) -> Response:
        """Change a draft study's settings (members and above)."""
        study = study_get(user=request.user, study_id=study_id)
        body = StudySettingsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        changes = dict(body.validated_data)
        upload_id = changes.pop("upload", None)
        study = study_update(user=request.user, study=study, changes=changes, upload_id=upload_id)
        return Response(self.get_serializer(study).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, study_id: int) -> Response:
        """Delete a study, its trials and model files (admins, or the member who made it;
        not while queued or running)."""
        study_delete(user=request.user, study=study_get(user=request.user, study_id=study_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class _StudyActionView(generics.GenericAPIView):
    serializer_class = StudySerializer

    def _answer(self, study: Study, code: int = status.HTTP_200_OK) -> Response:
        study = study_get(user=self.request.user, study_id=study.pk)  # fresh, with its progress
        return Response(self.get_serializer(study).data, status=code)


def _body(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    body = serializer_class(data=request.data)
    body.is_valid(raise_exception=True)
    return dict(body.validated_data)


class StudyStartView(_StudyActionView):
    @extend_schema(request=NoBodySerializer, responses=StudySerializer)
    def post(self, request: Request, study_id: int) -> Response:
        """Queue a draft study for the workers (members and above)."""
        study = study_get(user=request.user, study_id=study_id)
        _body(NoBodySerializer, request)
        return self._answer(study_start(user=request.user, study=study))


class StudyCancelView(_StudyActionView):
    @extend_schema(request=StudyCancelSerializer, responses=StudySerializer)
    def post(self, request: Request, study_id: int) -> Response:
        """Cancel a study; running trials stop, completed ones stay (members and above)."""
        study = study_get(user=request.user, study_id=study_id)
        body = _body(StudyCancelSerializer, request)
        return self._answer(study_cancel(user=request.user, study=study, reason=body.get("reason", "")))


class StudyResumeView(_StudyActionView):
    @extend_schema(request=StudyResumeSerializer, responses=StudySerializer)
    def post(self, request: Request, study_id: int) -> Response:
        """Queue a cancelled, failed or (with a larger n_trials) completed study again."""
        study = study_get(user=request.user, study_id=study_id)
        body = _body(StudyResumeSerializer, request)
        return self._answer(study_resume(user=request.user, study=study, n_trials=body.get("n_trials")))


class StudyCloneView(_StudyActionView):
    @extend_schema(request=StudyCloneSerializer, responses={201: StudySerializer})
    def post(self, request: Request, study_id: int) -> Response:
        """A new draft with the same settings (members and above)."""
        study = study_get(user=request.user, study_id=study_id)
        body = _body(StudyCloneSerializer, request)
        clone = study_clone(user=request.user, study=study, name=body.get("name"))
        return self._answer(clone, status.HTTP_201_CREATED)


# --- What a study produced ------------------------------------------------------------------


class StudyProgressView(generics.GenericAPIView):
    serializer_class = StudyProgressSerializer

    def get(self, request: Request, study_id: int) -> Response:
        """The progress snapshot: counts, best values, ETA, running trials."""
        return Response(finite(study_progress(user=request.user, study_id=study_id)))


class StudyCostSerializer(serializers.Serializer):
    gpu_seconds = serializers.FloatField(help_text="GPU seconds of the study's cloud trials.")
    gpu_type = serializers.CharField(allow_null=True, help_text="The workspace's RunPod GPU type.")
    usd_per_gpu_hour = serializers.FloatField(allow_null=True, help_text="From HPO_GPU_PRICES.")
    usd = serializers.FloatField(allow_null=True, help_text="null when no price is known for the GPU type.")


class StudyCostView(generics.GenericAPIView):
    serializer_class = StudyCostSerializer

    def get(self, request: Request, study_id: int) -> Response:
        """What the study's cloud trials cost (local trials cost nothing here)."""
        return Response(study_cost(study_get(user=request.user, study_id=study_id)))


class StudyLogView(generics.ListAPIView):
    """The study's log, oldest first; poll with ``?after=<last id seen>``."""

    serializer_class = StudyLogEntrySerializer

    def get_queryset(self) -> QuerySet[StudyLogEntry]:
        study = study_get(user=self.request.user, study_id=self.kwargs["study_id"])  # 404 before a 400
        query = _query(StudyLogQuerySerializer, self.request)
        return study_log_list(user=self.request.user, study_id=study.pk, **query)

    @extend_schema(parameters=[StudyLogQuerySerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class StudyTrialListView(generics.ListAPIView):
    """The study's trials, by number unless ``?ordering=`` says otherwise."""

    serializer_class = TrialSerializer

    def get_queryset(self) -> QuerySet[Trial]:
        study = study_get(user=self.request.user, study_id=self.kwargs["study_id"])
        query = _query(StudyTrialQuerySerializer, self.request)
        return trial_search(user=self.request.user, study_id=study.pk, **query)

    @extend_schema(parameters=[StudyTrialQuerySerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class StudyBestModelView(DownloadView):

    @extend_schema(responses=DOWNLOAD_RESPONSES)
    def get(self, request: Request, study_id: int) -> FileResponse:
        """Download the best completed trial's model (``.keras``)."""
        study = study_get(user=request.user, study_id=study_id)
        best = trial_best(user=request.user, study_id=study.pk)
        if best is None:
            raise NotFound(f"Study {study.name!r} has no completed trial yet, so no best model.")
        return model_download(best, f"study-{study.pk}-trial-{best.number}.keras")


class TrialCancelView(generics.GenericAPIView):
    """Here, not in trials/api.py: cancelling writes the study's log (studies.services), and
    trials does not import studies."""

    serializer_class = TrialDetailSerializer

    @extend_schema(request=NoBodySerializer, responses=TrialDetailSerializer)
    def post(self, request: Request, trial_id: int) -> Response:
        """Stop a running trial (members and above); it ends cancelled, the study goes on."""
        trial = trial_get(user=request.user, trial_id=trial_id)
        NoBodySerializer(data=request.data).is_valid(raise_exception=True)
        trial = trial_cancel(user=request.user, trial=trial)
        return Response(self.get_serializer(trial_get(user=request.user, trial_id=trial.pk)).data)


urlpatterns = [
    path("trials/<int:trial_id>/cancel/", TrialCancelView.as_view(), name="api-trial-cancel"),
    path("studies/", StudyListView.as_view(), name="api-study-list"),
    path("studies/<int:study_id>/", StudyDetailView.as_view(), name="api-study-detail"),
    path("studies/<int:study_id>/start/", StudyStartView.as_view(), name="api-study-start"),
    path("studies/<int:study_id>/cancel/", StudyCancelView.as_view(), name="api-study-cancel"),
    path("studies/<int:study_id>/resume/", StudyResumeView.as_view(), name="api-study-resume"),
    path("studies/<int:study_id>/clone/", StudyCloneView.as_view(), name="api-study-clone"),
    path("studies/<int:study_id>/progress/", StudyProgressView.as_view(), name="api-study-progress"),
    path("studies/<int:study_id>/cost/", StudyCostView.as_view(), name="api-study-cost"),
    path("studies/<int:study_id>/log/", StudyLogView.as_view(), name="api-study-log"),
    path("studies/<int:study_id>/trials/", StudyTrialListView.as_view(), name="api-study-trials"),
    path("studies/<int:study_id>/best-model/", StudyBestModelView.as_view(), name="api-study-best-model"),
]
