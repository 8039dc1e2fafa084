"""``manage.py bootstrap_demo``: one demo superuser, one login, shown on every run."""
from __future__ import annotations

import re
import stat
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from accounts.models import Membership, Role, Workspace

User = get_user_model()


@pytest.fixture
def var_dir(settings: Any, tmp_path: Path) -> Path:
    settings.VAR_DIR = tmp_path
    return tmp_path


def bootstrap(*args: str) -> str:
    out = StringIO()
    call_command("bootstrap_demo", *args, stdout=out)
    return out.getvalue()


def printed_password(output: str) -> str:
    match = re.search(r"password: (\S+)", output)
    assert match, output
    return match.group(1)


def test_second_run_prints_the_same_login_and_creates_nothing(db: None, var_dir: Path) -> None:
    first = bootstrap()
    second = bootstrap()

    assert printed_password(first) == printed_password(second)
    assert "http://127.0.0.1:8000/" in second
    assert "username: demo" in second
    assert User.objects.filter(username="demo").count() == 1
    assert Workspace.objects.filter(slug="demo").count() == 1


def test_demo_is_a_superuser_whose_password_works(db: None, var_dir: Path) -> None:
    password = printed_password(bootstrap())

    user = authenticate(username="demo", password=password)
    assert user is not None
    assert user.is_staff and user.is_superuser


def test_demo_workspace_is_owned_by_demo_next_to_the_personal_one(db: None, var_dir: Path) -> None:
    bootstrap()

    demo = User.objects.get(username="demo")
    workspace = Workspace.objects.get(slug="demo")
    assert workspace.name == "Demo"
    assert Membership.objects.get(workspace=workspace, user=demo).role == Role.OWNER
    assert Workspace.objects.filter(memberships__user=demo, personal=True).count() == 1


def test_login_file_is_private_and_holds_the_printed_password(db: None, var_dir: Path) -> None:
    password = printed_password(bootstrap())

    path = var_dir / "demo-login.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"password: {password}" in path.read_text()


def test_a_reset_database_gets_the_stored_password_again(db: None, var_dir: Path) -> None:
    password = printed_password(bootstrap())
    User.objects.filter(username="demo").delete()

    assert printed_password(bootstrap()) == password
    assert authenticate(username="demo", password=password) is not None


def test_a_changed_password_is_kept_until_reset_is_asked(db: None, var_dir: Path) -> None:
    bootstrap()
    demo = User.objects.get(username="demo")
    demo.set_password("chosen-by-a-person-1")
    demo.save()

    assert "--reset-password" in bootstrap()
    assert authenticate(username="demo", password="chosen-by-a-person-1") is not None

    new_password = printed_password(bootstrap("--reset-password"))
    assert authenticate(username="demo", password=new_password) is not None
    assert printed_password(bootstrap()) == new_password
