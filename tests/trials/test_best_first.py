"""The best trial follows the study's direction everywhere: API, snapshot, kept model."""
from __future__ import annotations

from typing import Any

import pytest

from studies.models import Study
from studies.progress import compute_progress
from studies.services import study_create
from trials.models import Trial
from trials.selectors import trial_best

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("directions", "best_number"), [(["maximize"], 1), (["minimize"], 0)])
def test_best_is_by_the_first_objectives_direction(workspace: Any, member: Any, directions: list[str], best_number: int) -> None:
    study = study_create(user=member, workspace=workspace, name="s", directions=directions)
    for number, value in enumerate((0.2, 0.9, 0.5)):
        Trial.objects.create(study=study, number=number, state="COMPLETE", value=value, values_json=f"[{value}]")
    best = trial_best(user=member, study_id=study.pk)
    assert best is not None and best.number == best_number
    assert compute_progress(Study.objects.get(pk=study.pk))["best_trial"] == best_number
