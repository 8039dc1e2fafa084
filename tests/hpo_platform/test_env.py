"""Readers of settings from the environment (hpo_platform.env): right values, loud failures."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from hpo_platform.env import (
    env_bool,
    env_int,
    env_list,
    env_path,
    env_str,
    parse_database_url,
)

EXPECTED_FORMS = ("sqlite:///", "postgres://user:password@host:5432/dbname")


# --- parse_database_url: SQLite ---------------------------------------------------------------


def test_sqlite_three_slashes_is_relative_path() -> None:
    config = parse_database_url("sqlite:///var/hpo.sqlite3")

    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == "var/hpo.sqlite3"
    assert not Path(config["NAME"]).is_absolute()


def test_sqlite_four_slashes_is_absolute_path() -> None:
    config = parse_database_url("sqlite:////srv/hpo/db.sqlite3")

    assert config["NAME"] == "/srv/hpo/db.sqlite3"


def test_sqlite_path_is_unquoted() -> None:
    assert parse_database_url("sqlite:////srv/my%20data/db.sqlite3")["NAME"] == "/srv/my data/db.sqlite3"


def test_sqlite_memory() -> None:
    config = parse_database_url("sqlite://:memory:")

    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == ":memory:"


def test_sqlite_waits_for_locks_instead_of_failing() -> None:
    options = parse_database_url("sqlite:///db.sqlite3")["OPTIONS"]

    assert options["transaction_mode"] == "IMMEDIATE"
    assert options["timeout"] >= 1
    assert "journal_mode=WAL" in options["init_command"]


# --- parse_database_url: PostgreSQL -----------------------------------------------------------


def test_postgres_with_user_password_port_and_options() -> None:
    config = parse_database_url(
        "postgres://hpo%40app:s%3Acret%2F1@db.example.com:6543/hpo?sslmode=require&connect_timeout=5"
    )

    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert config["NAME"] == "hpo"
    assert config["USER"] == "hpo@app"
    assert config["PASSWORD"] == "s:cret/1"
    assert config["HOST"] == "db.example.com"
    assert config["PORT"] == "6543"
    assert config["OPTIONS"] == {"sslmode": "require", "connect_timeout": "5"}


def test_postgres_defaults_port_and_credentials() -> None:
    config = parse_database_url("postgresql://127.0.0.1/hpo")

    assert config["PORT"] == "5432"
    assert config["USER"] == ""
    assert config["PASSWORD"] == ""
    assert config["OPTIONS"] == {}


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "pgsql", "postgresql+psycopg", "POSTGRES"])
def test_postgres_scheme_aliases(scheme: str) -> None:
    assert parse_database_url(f"{scheme}://db/hpo")["ENGINE"] == "django.db.backends.postgresql"


def test_postgres_ipv6_host() -> None:
    config = parse_database_url("postgres://u@[::1]:5433/hpo")

    assert config["HOST"] == "::1"
    assert config["PORT"] == "5433"


# --- parse_database_url: malformed --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgres://host:notaport/db",
        "postgres://host:99999/db",
        "mysql://x/y",
        "postgres://host/",
        "postgres:///db",
        "postgres://host/a/b",
        "sqlite://relative.db",
        "sqlite:///",
        "",
        "not a url",
    ],
)
def test_malformed_database_url_names_variable_and_expected_forms(url: str) -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        parse_database_url(url)

    message = str(error.value)
    assert message.startswith(f"DATABASE_URL={url!r}")
    for form in EXPECTED_FORMS:
        assert form in message


def test_malformed_url_names_the_variable_it_came_from() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^TEST_DATABASE_URL='mysql://x/y'"):
        parse_database_url("mysql://x/y", variable="TEST_DATABASE_URL")


def test_bad_port_says_what_is_wrong() -> None:
    with pytest.raises(ImproperlyConfigured, match="notaport"):
        parse_database_url("postgres://host:notaport/db")


# --- env_bool, env_int, env_list, env_str, env_path -----------------------------------------------


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", " yes ", "On"])
def test_env_bool_true(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("HPO_FLAG", raw)

    assert env_bool("HPO_FLAG", False) is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "off", ""])
def test_env_bool_false(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("HPO_FLAG", raw)

    assert env_bool("HPO_FLAG", True) is False


def test_env_bool_unset_gives_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPO_FLAG", raising=False)

    assert env_bool("HPO_FLAG", True) is True
    assert env_bool("HPO_FLAG", False) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "enabled"])
def test_env_bool_refuses_other_values(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("HPO_FLAG", raw)

    with pytest.raises(ImproperlyConfigured) as error:
        env_bool("HPO_FLAG", False)

    message = str(error.value)
    assert message.startswith(f"HPO_FLAG={raw!r}")
    assert "'true'" in message and "'false'" in message


def test_env_int_reads_value_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_COUNT", " 42 ")
    assert env_int("HPO_COUNT", 1) == 42

    monkeypatch.delenv("HPO_COUNT")
    assert env_int("HPO_COUNT", 7) == 7


@pytest.mark.parametrize("raw", ["ten", "1.5", "", "0x10"])
def test_env_int_refuses_non_integer(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("HPO_COUNT", raw)

    with pytest.raises(ImproperlyConfigured, match=rf"^HPO_COUNT={raw!r} is not an integer"):
        env_int("HPO_COUNT", 1)


def test_env_int_refuses_below_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_COUNT", "0")

    with pytest.raises(ImproperlyConfigured, match="HPO_COUNT=0 is below the minimum of 1"):
        env_int("HPO_COUNT", 5, minimum=1)


def test_env_int_accepts_the_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_COUNT", "1")

    assert env_int("HPO_COUNT", 5, minimum=1) == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a.example.com", ["a.example.com"]),
        (" a.example.com , b.example.com ", ["a.example.com", "b.example.com"]),
        ("a,,b,", ["a", "b"]),
        ("", []),
        (" , ", []),
    ],
)
def test_env_list_splits_on_commas(monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]) -> None:
    monkeypatch.setenv("HPO_HOSTS", raw)

    assert env_list("HPO_HOSTS", ["default"]) == expected


def test_env_list_default_is_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPO_HOSTS", raising=False)
    default = ["localhost"]

    hosts = env_list("HPO_HOSTS", default)
    hosts.append("evil.example.com")

    assert default == ["localhost"]


def test_env_str_and_env_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HPO_NAME", raising=False)
    monkeypatch.delenv("HPO_DIR", raising=False)
    assert env_str("HPO_NAME", "fallback") == "fallback"
    assert env_path("HPO_DIR", tmp_path) == tmp_path

    monkeypatch.setenv("HPO_NAME", "set")
    monkeypatch.setenv("HPO_DIR", str(tmp_path / "sub" / ".." / "var"))
    assert env_str("HPO_NAME", "fallback") == "set"
    assert env_path("HPO_DIR", Path("/unused")) == (tmp_path / "var").resolve()


def test_env_float_reads_numbers_and_refuses_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpo_platform.env import env_float

    monkeypatch.setenv("Q_POLL", "0.25")
    assert env_float("Q_POLL", 0.1, minimum=0.01) == 0.25
    monkeypatch.setenv("Q_POLL", "fast")
    with pytest.raises(ImproperlyConfigured, match="Q_POLL='fast' is not a number"):
        env_float("Q_POLL", 0.1)
    monkeypatch.setenv("Q_POLL", "0")
    with pytest.raises(ImproperlyConfigured, match="below the minimum"):
        env_float("Q_POLL", 0.1, minimum=0.01)
