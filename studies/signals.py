"""Rules other apps' writes must obey where they touch studies (accounts may not import
studies, so the rule lives here, on Django's signals)."""
from __future__ import annotations

from typing import Any

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from accounts.errors import ValidationError
from accounts.models import Workspace
from studies.models import ACTIVE_STATUSES, Study


@receiver(pre_delete, sender=Workspace, dispatch_uid="studies.refuse_deleting_busy_workspace")
def refuse_deleting_a_workspace_with_active_studies(sender: Any, instance: Workspace, **kwargs: Any) -> None:
    """A workspace whose studies are queued or running is not deleted (its workers would
    write into rows that vanish): cancel them first."""
    active = list(Study.objects.filter(workspace=instance, status__in=ACTIVE_STATUSES).values_list("name", flat=True)[:5])
    if active:
        raise ValidationError(
            f"{instance.name!r} has studies queued or running ({', '.join(map(repr, active))}); "
            "cancel them before deleting the workspace.",
            field="workspace",
        )
