"""Typed readers for settings that come from environment variables.

Every reader fails loudly with :class:`django.core.exceptions.ImproperlyConfigured`, naming
the variable, the value it got and what is allowed, so a typo in a deployment never turns
into a silently wrong setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean; use one of {sorted(_TRUE)} or {sorted(_FALSE - {''})}."
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}.")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if minimum is not None and not value >= minimum:
        raise ImproperlyConfigured(f"{name}={raw} is below the minimum of {minimum:g}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blanks around items are ignored."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    return Path(raw).expanduser().resolve() if raw else default


_POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "postgresql+psycopg"}
_SQLITE_SCHEMES = {"sqlite"}


def parse_database_url(url: str, *, variable: str = "DATABASE_URL") -> dict[str, Any]:
    """Turn a database URL into a Django ``DATABASES`` entry.

    Accepted forms: ``sqlite:///relative/or/absolute/path.sqlite3`` (three slashes then the
    path; four for an absolute path), ``sqlite://:memory:``, and
    ``postgres://user:password@host:port/dbname?sslmode=require``.
    """
    allowed = (
        "sqlite:///path/to/db.sqlite3 or postgres://user:password@host:5432/dbname"
    )
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise ImproperlyConfigured(f"{variable}={url!r} is malformed ({error}); expected {allowed}.") from None
    scheme = parts.scheme.lower()
    if scheme in _SQLITE_SCHEMES:
        # No port here: the netloc of sqlite://:memory: would read as a bad port.
        return _sqlite_config(url, parts.netloc, parts.path, variable=variable, allowed=allowed)
    if scheme in _POSTGRES_SCHEMES:
        try:
            port = parts.port  # raises ValueError on a non-numeric or out-of-range port
        except ValueError as error:
            raise ImproperlyConfigured(
                f"{variable}={url!r} is malformed ({error}); expected {allowed}."
            ) from None
        name = unquote(parts.path.lstrip("/"))
        if not name or "/" in name:
            raise ImproperlyConfigured(
                f"{variable}={url!r} names no database (the path after the host); expected {allowed}."
            )
        if not parts.hostname:
            raise ImproperlyConfigured(f"{variable}={url!r} names no host; expected {allowed}.")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname,
            "PORT": str(port or 5432),
            "OPTIONS": dict(parse_qsl(parts.query)),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ImproperlyConfigured(
        f"{variable}={url!r} has an unsupported scheme {parts.scheme!r}; expected {allowed}."
    )


def _sqlite_config(url: str, netloc: str, path: str, *, variable: str, allowed: str) -> dict[str, Any]:
    if netloc == ":memory:":
        name = ":memory:"
    elif netloc:
        raise ImproperlyConfigured(
            f"{variable}={url!r}: a SQLite URL takes three slashes before the path; expected {allowed}."
        )
    elif not path or path == "/":
        raise ImproperlyConfigured(f"{variable}={url!r} names no SQLite file; expected {allowed}.")
    else:
        # sqlite:///var/db.sqlite3 is relative, sqlite:////abs/db.sqlite3 absolute.
        name = unquote(path[1:])
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": name,
        "OPTIONS": {
            # A web server and a qcluster write at once: WAL lets readers go on during a
            # write, IMMEDIATE takes the write lock up front (no upgrade deadlocks) and the
            # timeout makes writers wait instead of failing with "database is locked".
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        },
    }
