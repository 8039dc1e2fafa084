"""The fixed cast of every test module: an owner, an admin, a member, a viewer and an outsider.

Each user gets a personal workspace on creation (accounts.signals); the shared ``workspace``
is owned by ``owner`` and has the others as members with their roles. ``outsider`` belongs
only to a workspace of their own.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from accounts.models import Membership, Role, Workspace
from accounts.services import workspace_create

User = get_user_model()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # The default PBKDF2 costs ~0.3 s a user; the cast is made for every test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_user(username: str, **extra: Any) -> Any:
    return User.objects.create_user(username=username, password=f"{username}-pass-123", **extra)


@pytest.fixture
def owner(db: None) -> Any:
    return make_user("olivia")


@pytest.fixture
def workspace(owner: Any) -> Workspace:
    return workspace_create(owner=owner, name="Vision team")


def _member(workspace: Workspace, username: str, role: Role) -> Any:
    user = make_user(username)
    Membership.objects.create(user=user, workspace=workspace, role=role)
    return user


@pytest.fixture
def admin_user(workspace: Workspace) -> Any:
    return _member(workspace, "adam", Role.ADMIN)


@pytest.fixture
def member(workspace: Workspace) -> Any:
    return _member(workspace, "mia", Role.MEMBER)


@pytest.fixture
def viewer(workspace: Workspace) -> Any:
    return _member(workspace, "victor", Role.VIEWER)


@pytest.fixture
def outsider(db: None) -> Any:
    return make_user("oscar")


def database_url_for_subprocess() -> str:
    """A DATABASE_URL that points a child process at the test database."""
    from django.db import connection

    database = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{database['NAME']}"
    user = database.get("USER") or ""
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    return f"postgres://{credentials}{database['HOST']}:{database['PORT']}/{database['NAME']}"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # Throttle and lockout counters live in the cache: each test starts from none.
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api_client() -> Callable[[Any], Any]:
    """``api_client(user)``: a DRF test client logged in as ``user`` through a real session
    (``None``: anonymous). Token-authenticated clients are made in the token tests."""
    from rest_framework.test import APIClient

    def make(user: Any) -> APIClient:
        client = APIClient(HTTP_HOST="localhost")
        if user is not None:
            client.force_login(user)
        return client

    return make
