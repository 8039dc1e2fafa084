"""Deleting a workspace (accounts.services.workspace_delete) respects its studies."""
from __future__ import annotations

from typing import Any

import pytest

from accounts.errors import ValidationError
from accounts.models import Workspace
from studies.models import Study
from studies.services import study_cancel, study_create, study_start

pytestmark = pytest.mark.django_db


def test_a_workspace_with_a_queued_study_is_not_deleted_and_loses_nothing(workspace: Any, owner: Any, member: Any) -> None:
    from accounts.services import workspace_delete

    study = study_create(user=member, workspace=workspace, name="busy")
    study_start(user=member, study=study)
    with pytest.raises(ValidationError, match="'busy'.*cancel them"):
        workspace_delete(actor=owner, workspace=workspace)
    assert Workspace.objects.filter(pk=workspace.pk).exists()
    assert Study.objects.filter(pk=study.pk).exists()

    study_cancel(user=member, study=Study.objects.get(pk=study.pk))
    Study.objects.filter(pk=study.pk).update(status="cancelled")  # no worker here to drain it
    workspace_delete(actor=owner, workspace=workspace)
    assert not Workspace.objects.filter(pk=workspace.pk).exists()


def test_the_api_answers_400_naming_the_workspace(api_client: Any, workspace: Any, owner: Any, member: Any) -> None:
    study = study_create(user=member, workspace=workspace, name="busy")
    study_start(user=member, study=study)
    answer = api_client(owner).delete(f"/api/v1/workspaces/{workspace.slug}/")
    assert answer.status_code == 400
    assert "cancel them" in answer.json()["workspace"][0]
