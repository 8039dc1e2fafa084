"""A new user gets a personal workspace, however the account was made (admin, shell, sign-up)."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="personal_workspace")
def create_personal_workspace(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if not created or raw:
        return
    from accounts.services import workspace_create

    # A username may have 150 characters, a workspace name 100: cut the username so that no
    # account is refused for the length of its name.
    suffix = "'s workspace"
    name = f"{instance.get_username()[: 100 - len(suffix)]}{suffix}"
    workspace_create(owner=instance, name=name, personal=True)
