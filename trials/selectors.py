"""Reads on trials, always scoped by the user asking: another workspace's trial is NotFound.

Model files are found through the trial row only (``Trial.artifacts["model"]``, written by
the workers), never from a path a client sends, and are served only when they lie under
``MEDIA_ROOT``.
"""
from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import DurationField, ExpressionWrapper, F, QuerySet

from accounts.errors import NotFound, ValidationError
from accounts.selectors import workspace_list
from trials.models import Trial, TrialState, best_first

logger = logging.getLogger(__name__)

# ``?ordering=`` values and the columns they sort by; nulls (unfinished trials) go last and
# the trial number breaks ties, so pages are stable.
TRIAL_ORDERINGS: dict[str, tuple[str, bool]] = {
    "value": ("value", False),
    "-value": ("value", True),
    "number": ("number", False),
    "-number": ("number", True),
    "duration": ("duration", False),
    "-duration": ("duration", True),
}


def trial_list(*, user: AbstractBaseUser) -> QuerySet[Trial]:
    return Trial.objects.filter(study__workspace__in=workspace_list(user=user))


def trial_get(*, user: AbstractBaseUser, trial_id: int) -> Trial:
    trial = trial_list(user=user).select_related("study__workspace").filter(pk=trial_id).first()
    if trial is None:
        raise NotFound(f"No trial {trial_id} in a workspace you belong to.")
    return trial


def trial_search(
    *, user: AbstractBaseUser, study_id: int, state: str | None = None, ordering: str | None = None
) -> QuerySet[Trial]:
    """The trials of one study (the caller has checked the study is the user's), filtered by
    Optuna state and ordered by one of ``TRIAL_ORDERINGS`` (default: by number)."""
    trials = trial_list(user=user).filter(study_id=study_id)
    if state:
        if state not in TrialState.values:
            raise ValidationError(
                f"{state!r} is not a trial state; allowed: {', '.join(TrialState.values)}.", field="state"
            )
        trials = trials.filter(state=state)
    ordering = ordering or "number"
    if ordering not in TRIAL_ORDERINGS:
        raise ValidationError(
            f"Cannot order by {ordering!r}; allowed: {', '.join(TRIAL_ORDERINGS)}.", field="ordering"
        )
    column, descending = TRIAL_ORDERINGS[ordering]
    if column == "duration":
        trials = trials.annotate(
            duration=ExpressionWrapper(F("datetime_complete") - F("datetime_start"), output_field=DurationField())
        )
    key = F(column).desc(nulls_last=True) if descending else F(column).asc(nulls_last=True)
    return trials.order_by(key, "number")


def trial_best(*, user: AbstractBaseUser, study_id: int) -> Trial | None:
    """The study's best COMPLETE trial by its direction (``best_first``), the rule that
    ``workers.trial_execution.keep_only_best_model`` and the progress snapshot use."""
    trials = trial_list(user=user).filter(study_id=study_id, state=TrialState.COMPLETE, value__isnull=False)
    directions = trials.values_list("study__directions", flat=True).first()
    return trials.order_by(*best_first(directions)).first()


def trial_model_file(*, trial: Trial) -> Path:
    """The trial's kept ``.keras`` file, or ``NotFound`` saying why there is none."""
    stored = (trial.artifacts or {}).get("model")
    if not stored:
        raise NotFound(
            f"Trial {trial.number} has no model file: only the study's best trial keeps its model "
            "(unless HPO_KEEP_ALL_MODELS is on), and failed or pruned trials save none."
        )
    media_root = Path(settings.MEDIA_ROOT).resolve()
    path = Path(stored).resolve()
    if not path.is_relative_to(media_root):
        logger.warning("trial %s: model path outside MEDIA_ROOT refused", trial.pk)
        raise NotFound(f"Trial {trial.number}'s model file is not available.")
    if not path.is_file():
        raise NotFound(f"Trial {trial.number}'s model file is gone from the server.")
    return path
