"""Storage benchmark: one TPE study, a cheap 5-parameter objective, three storages.

    .venv/bin/python bench/storage.py [--trials 1000] [--postgres postgres://postgres@127.0.0.1:5432]

Runs the same study (same seed) through DjangoStorage and Optuna's RDBStorage on the same
PostgreSQL server (each in a database of its own, created when missing), and through
InMemoryStorage; prints trials per second for each and the ratio DjangoStorage / RDBStorage
(target: at least 1.0). The baseline is measured in the same run.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    layers = trial.suggest_int("layers", 1, 6)
    units = trial.suggest_int("units", 16, 512, step=16)
    activation = trial.suggest_categorical("activation", ["relu", "tanh", "elu"])
    penalty = {"relu": 0.0, "tanh": 0.3, "elu": 0.1}[activation]
    return (x - 1.5) ** 2 + abs(math.log10(y) + 3) + abs(layers - 3) + abs(units - 128) / 64 + penalty


def ensure_database(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"


def run(storage: Any, n_trials: int) -> tuple[float, float]:
    study = optuna.create_study(
        storage=storage,
        study_name=f"bench-{uuid.uuid4()}",
        sampler=optuna.samplers.TPESampler(seed=42),
    )
    started = time.perf_counter()
    study.optimize(objective, n_trials=n_trials)
    elapsed = time.perf_counter() - started
    return n_trials / elapsed, study.best_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    os.environ["DATABASE_URL"] = ensure_database(args.postgres, "hpo_bench_django")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hpo_platform.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from studies.optuna_storage import DjangoStorage

    rdb_url = ensure_database(args.postgres, "hpo_bench_rdb").replace("postgres://", "postgresql+psycopg://")
    results = {
        "DjangoStorage (PostgreSQL)": run(DjangoStorage(), args.trials),
        "RDBStorage (PostgreSQL)": run(optuna.storages.RDBStorage(rdb_url), args.trials),
        "InMemoryStorage": run(optuna.storages.InMemoryStorage(), args.trials),
    }
    print(f"{args.trials} trials, TPE (seed 42), 5 parameters")
    for name, (rate, best) in results.items():
        print(f"  {name:<28} {rate:8.1f} trials/s   best value {best:.4f}")
    ratio = results["DjangoStorage (PostgreSQL)"][0] / results["RDBStorage (PostgreSQL)"][0]
    print(f"ratio DjangoStorage / RDBStorage: {ratio:.2f} (target >= 1.0)")


if __name__ == "__main__":
    main()
