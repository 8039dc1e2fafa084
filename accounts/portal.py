"""What every portal page needs of the signed-in user: the workspace they are working in.

The current workspace is kept in the session (``workspace`` = its slug) and switched by
``accounts.views.switch_workspace``; when none is chosen (or it is gone), the user's first
team workspace, else their personal one.
"""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.models import Workspace
from accounts.selectors import workspace_list

SESSION_KEY = "workspace"


def user_workspaces(request: HttpRequest) -> list[Workspace]:
    if not request.user.is_authenticated:
        return []
    return list(workspace_list(user=request.user).order_by("personal", "name"))


def current_workspace(request: HttpRequest, workspaces: list[Workspace] | None = None) -> Workspace | None:
    workspaces = user_workspaces(request) if workspaces is None else workspaces
    chosen = request.session.get(SESSION_KEY)
    for workspace in workspaces:
        if workspace.slug == chosen:
            return workspace
    return workspaces[0] if workspaces else None


def set_current_workspace(request: HttpRequest, workspace: Workspace) -> None:
    request.session[SESSION_KEY] = workspace.slug


def portal_context(request: HttpRequest) -> dict[str, Any]:
    """Template context processor (settings.TEMPLATES): ``workspaces``, ``current_workspace``,
    ``signup_open``."""
    from django.conf import settings

    workspaces = user_workspaces(request)
    return {
        "workspaces": workspaces,
        "current_workspace": current_workspace(request, workspaces),
        "signup_open": settings.HPO_SIGNUP_OPEN,
    }
