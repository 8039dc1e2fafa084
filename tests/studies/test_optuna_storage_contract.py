"""Optuna's own storage contract (59 tests shipped in the optuna wheel), run on DjangoStorage.

It runs on whichever database the suite is configured for; `make test` runs the suite on
PostgreSQL and on SQLite.
"""
from __future__ import annotations

import pytest
from optuna.testing.pytest_storages import StorageTestCase

from studies.optuna_storage import DjangoStorage


@pytest.fixture
def storage(db: None) -> DjangoStorage:
    return DjangoStorage()


class TestDjangoStorageContract(StorageTestCase):
    pass
