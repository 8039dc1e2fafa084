"""Plots as Plotly figure JSON (``studies.plots`` draws them):

- ``GET /api/v1/studies/<id>/plots/<kind>/``: kind in history, importance, parallel, contour,
  slice, intermediate, timeline (from ``optuna.visualization``).
- ``GET /api/v1/trials/<id>/plots/<kind>/``: kind in curves (training curves), confusion
  (confusion matrix on the validation set).

Viewers and above read. Another workspace's study or trial is a 404; an unknown kind a 400
naming ``kind``; a plot that cannot be drawn yet is a 200 with an empty figure and a
``"message"``.
"""
from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.errors import NotFound, ValidationError
from studies import plots
from studies.selectors import study_get, study_list
from trials.models import Trial

_FIGURE_DESCRIPTION = (
    'A Plotly figure: {"data": [...], "layout": {...}}, to pass to Plotly.newPlot. When the '
    'plot cannot be drawn yet, "data" is empty and "message" says why.'
)
_EXAMPLE = OpenApiExample(
    "Not enough trials yet",
    value={"data": [], "layout": {"title": {"text": "Contour"}}, "message": "A contour plot needs ..."},
    response_only=True,
)


def _checked_kind(kind: str, allowed: dict[str, str]) -> str:
    if kind not in allowed:
        raise ValidationError(f"Unknown plot {kind!r}; choose one of {', '.join(allowed)}.", field="kind")
    return kind


def _kind_parameter(allowed: dict[str, str]) -> OpenApiParameter:
    described = "; ".join(f"{name}: {title}" for name, title in allowed.items())
    return OpenApiParameter("kind", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(allowed), description=described)


class StudyPlotView(APIView):
    @extend_schema(
        operation_id="studies_plots_retrieve",
        tags=["plots"],
        summary="A study plot (Plotly figure JSON)",
        description=_FIGURE_DESCRIPTION + " Multi-objective studies are drawn for their first "
        f"objective; a contour shows at most {plots.CONTOUR_MAX_PARAMS} parameters.",
        parameters=[
            OpenApiParameter("study_id", OpenApiTypes.INT, OpenApiParameter.PATH),
            _kind_parameter(plots.STUDY_PLOTS),
        ],
        responses={200: OpenApiTypes.OBJECT},
        examples=[_EXAMPLE],
    )
    def get(self, request: Request, study_id: int, kind: str) -> Response:
        study = study_get(user=request.user, study_id=study_id)
        return Response(plots.study_plot(study, _checked_kind(kind, plots.STUDY_PLOTS)))


class TrialPlotView(APIView):
    @extend_schema(
        operation_id="trials_plots_retrieve",
        tags=["plots"],
        summary="A trial plot (Plotly figure JSON)",
        description=_FIGURE_DESCRIPTION + " curves: loss and accuracy per epoch, training and "
        "validation; confusion: the confusion matrix on the validation set, once the trial has "
        "finished training.",
        parameters=[
            OpenApiParameter("trial_id", OpenApiTypes.INT, OpenApiParameter.PATH),
            _kind_parameter(plots.TRIAL_PLOTS),
        ],
        responses={200: OpenApiTypes.OBJECT},
        examples=[_EXAMPLE],
    )
    def get(self, request: Request, trial_id: int, kind: str) -> Response:
        trial = _trial_get(user=request.user, trial_id=trial_id)
        return Response(plots.trial_plot(trial, _checked_kind(kind, plots.TRIAL_PLOTS)))


def _trial_get(*, user: Any, trial_id: int) -> Trial:
    trial = (
        Trial.objects.filter(study__in=study_list(user=user), pk=trial_id).select_related("study").first()
    )
    if trial is None:
        raise NotFound(f"No trial {trial_id} in a workspace you belong to.")
    return trial


urlpatterns = [
    path("studies/<int:study_id>/plots/<str:kind>/", StudyPlotView.as_view(), name="api-study-plot"),
    path("trials/<int:trial_id>/plots/<str:kind>/", TrialPlotView.as_view(), name="api-trial-plot"),
]
