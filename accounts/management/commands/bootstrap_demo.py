"""``manage.py bootstrap_demo``: a login to try the platform with, made once, shown every time.

Idempotent. The first run creates the superuser ``demo`` with a random password and stores
the login in ``<VAR_DIR>/demo-login.txt`` (mode 0600; ``var/`` is git-ignored). Later runs
change nothing and print the same login. The user's personal workspace comes from the
post_save signal in ``accounts.signals``; this command adds the shared ``demo`` workspace.

The stored file is the source of the password: if the database was reset but the file
kept, the user is re-created with the same password. The command never overwrites a
password someone changed on an existing ``demo`` user unless asked with
``--reset-password``.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from accounts.models import Workspace
from accounts.services import workspace_create

USERNAME = "demo"
WORKSPACE_SLUG = "demo"
LOGIN_URL = "http://127.0.0.1:8000/"
LOGIN_FILE_NAME = "demo-login.txt"


def login_file() -> Path:
    return Path(settings.VAR_DIR) / LOGIN_FILE_NAME


def read_stored_password(path: Path) -> str | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "password" and value.strip():
            return value.strip()
    return None


def write_login(path: Path, password: str) -> None:
    """Write the login file readable by its owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        os.fchmod(stream.fileno(), 0o600)  # in case a stale partial file had another mode
        stream.write(f"url: {LOGIN_URL}\nusername: {USERNAME}\npassword: {password}\n")
    os.replace(partial, path)


class Command(BaseCommand):
    help = "Create the demo superuser and the 'demo' workspace if missing, and print the login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset-password",
            action="store_true",
            help="Give the demo user a new random password (and store it).",
        )

    def handle(self, *args: Any, reset_password: bool, **options: Any) -> None:
        path = login_file()
        with transaction.atomic():
            password = self._ensure_user(path, reset_password=reset_password)
            self._ensure_workspace()
        if password is None:
            self.stdout.write(
                f"The user {USERNAME!r} exists, but its password is not the one in {path} "
                "(or that file is missing). Run `manage.py bootstrap_demo --reset-password` "
                "to set and store a new one."
            )
            return
        self.stdout.write(
            f"Demo login (stored in {path}):\n"
            f"  URL:      {LOGIN_URL}\n"
            f"  username: {USERNAME}\n"
            f"  password: {password}"
        )

    def _ensure_user(self, path: Path, *, reset_password: bool) -> str | None:
        """Return the working password, or ``None`` when it is unknown to us."""
        User = get_user_model()
        user = User.objects.filter(username=USERNAME).first()
        stored = read_stored_password(path)
        if user is None:
            password = stored or secrets.token_urlsafe(12)
            # The file first: if the transaction then fails, the next run reuses it.
            write_login(path, password)
            User.objects.create_superuser(username=USERNAME, email="", password=password)
            self.stdout.write(f"Created the superuser {USERNAME!r}.")
            return password
        if reset_password:
            password = secrets.token_urlsafe(12)
            write_login(path, password)
            user.set_password(password)
            user.save(update_fields=["password"])
            self.stdout.write(f"Set a new password for {USERNAME!r}.")
            return password
        if stored is not None and user.check_password(stored):
            return stored
        return None

    def _ensure_workspace(self) -> None:
        if Workspace.objects.filter(slug=WORKSPACE_SLUG).exists():
            return
        owner = get_user_model().objects.get(username=USERNAME)
        workspace_create(owner=owner, name="Demo", slug=WORKSPACE_SLUG)
        self.stdout.write(f"Created the workspace {WORKSPACE_SLUG!r}.")
