"""Settings read from the environment, checked in fresh processes (settings load once per process):
a production environment passes ``check --deploy``, and a broken one stops with a message naming
the variable at fault."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings

PROJECT_DIR = Path(settings.BASE_DIR)

# Variables the settings read; cleared so the environment running the tests cannot leak in.
_SETTINGS_VARIABLES = (
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "REDIS_URL",
    "Q_BROKER",
    "Q_WORKERS",
    "Q_TIMEOUT",
    "Q_RETRY",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "STATIC_ROOT",
    "MEDIA_ROOT",
    "LOG_LEVEL",
)


def environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _SETTINGS_VARIABLES}
    env["DJANGO_SETTINGS_MODULE"] = "hpo_platform.settings"
    env["HPO_VAR_DIR"] = str(tmp_path / "var")
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/x.sqlite3"
    env.update(variables)
    return env


def production(tmp_path: Path, **variables: str) -> dict[str, str]:
    deployment = {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_hex(32),
        "ALLOWED_HOSTS": "hpo.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://hpo.example.com",
    }
    return environment(tmp_path, **{**deployment, **variables})


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def load_settings(env: dict[str, str], expression: str) -> subprocess.CompletedProcess[str]:
    """Import the settings module alone and print one expression over it (``s``)."""
    return subprocess.run(
        [sys.executable, "-c", f"import hpo_platform.settings as s; print({expression})"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_deploy_check_is_clean_with_production_environment(tmp_path: Path) -> None:
    env = production(tmp_path)
    assert len(env["SECRET_KEY"]) == 64

    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in output
    assert "security." not in output


def test_short_secret_key_stops_startup_with_debug_off(tmp_path: Path) -> None:
    env = production(tmp_path, SECRET_KEY="short")

    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert "at least 50 characters" in result.stderr


def test_debug_off_without_secret_key_fails_naming_secret_key(tmp_path: Path) -> None:
    env = production(tmp_path)
    del env["SECRET_KEY"]

    result = manage(env, "check")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY must be set" in result.stderr


def test_debug_off_with_development_secret_fails(tmp_path: Path) -> None:
    env = production(tmp_path, SECRET_KEY="insecure-development-secret-do-not-use-in-production")

    result = load_settings(env, "s.SECRET_KEY")

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_malformed_database_url_stops_manage_check(tmp_path: Path) -> None:
    result = manage(environment(tmp_path, DATABASE_URL="postgres://host:bad/db"), "check")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DATABASE_URL='postgres://host:bad/db' is malformed" in result.stderr
    assert "postgres://user:password@host:5432/dbname" in result.stderr


def test_debug_value_that_is_not_a_boolean_stops_startup(tmp_path: Path) -> None:
    result = load_settings(environment(tmp_path, DEBUG="flase"), "s.DEBUG")

    assert result.returncode != 0
    assert "DEBUG='flase' is not a boolean" in result.stderr


def test_csrf_trusted_origin_without_scheme_stops_startup(tmp_path: Path) -> None:
    result = load_settings(environment(tmp_path, CSRF_TRUSTED_ORIGINS="hpo.example.com"), "1")

    assert result.returncode != 0
    assert "CSRF_TRUSTED_ORIGINS entry 'hpo.example.com' must start with http:// or https://" in (
        result.stderr
    )


def test_relative_sqlite_url_resolves_under_project_with_separate_test_file(tmp_path: Path) -> None:
    # var/ is where the default database lives already, so nothing new is made in the project.
    env = environment(tmp_path, DATABASE_URL="sqlite:///var/relative-check.sqlite3")
    database = "s.DATABASES['default']"

    result = load_settings(env, f"{database}['NAME'] + '|' + {database}['TEST']['NAME']")

    assert result.returncode == 0, result.stderr
    name, test_name = result.stdout.strip().split("|")
    assert Path(name) == PROJECT_DIR / "var" / "relative-check.sqlite3"
    assert Path(test_name) == PROJECT_DIR / "var" / "test_relative-check.sqlite3"
    assert not Path(name).exists()


def test_memory_sqlite_url_loads(tmp_path: Path) -> None:
    env = environment(tmp_path, DATABASE_URL="sqlite://:memory:")

    result = load_settings(env, "s.DATABASES['default']['NAME']")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ":memory:"


def test_production_cookies_are_secure(tmp_path: Path) -> None:
    expression = (
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS"
    )

    result = load_settings(production(tmp_path), expression)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True True True 31536000"
