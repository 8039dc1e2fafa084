"""Scaling over qcluster workers: one study of 24 trials that sleep a fixed time (no
TensorFlow), run by `run_study --queue` on 1, 2, 4 and 6 worker processes.

    .venv/bin/python bench/scaling.py [--trials 24] [--sleep 2] [--workers 1 2 4 6]

Each run gets a fresh PostgreSQL database (`hpo_bench_scaling` on BENCH_POSTGRES, default
postgres://postgres@127.0.0.1:5432) and its own `qcluster`; the time is run_study's, from
the study's own duration (queued to finished, from the database: what the cluster did) and
run_study's wall time (with its interpreter's start). Prints the speedup of the study's
duration over 1 worker (target: at least 0.9 times the number of workers).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "hpo_bench_scaling"


def fresh_database(server: str) -> str:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return f"{server}/{DATABASE}"


def study_seconds(database_url: str, study_id: int) -> float:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT EXTRACT(EPOCH FROM finished_at - queued_at) FROM studies_study WHERE id = %s", (study_id,)
        ).fetchone()
    return float(row[0])


def where_time_went(database_url: str, study_id: int, workers: int) -> str:
    """The platform's share of the study's time: from queued to the first trial's start,
    how busy the workers were (the trials' summed durations over workers x study time), the
    idle worker time per trial that follows from it, and from the last trial's end to the
    study's end."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        queued, finished = conn.execute(
            "SELECT queued_at, finished_at FROM studies_study WHERE id = %s", (study_id,)
        ).fetchone()
        rows = conn.execute(
            "SELECT datetime_start, datetime_complete FROM trials_trial WHERE study_id = %s", (study_id,)
        ).fetchall()
    total = (finished - queued).total_seconds()
    busy = sum((end - start).total_seconds() for start, end in rows)
    first = (min(start for start, _end in rows) - queued).total_seconds()
    last = (finished - max(end for _start, end in rows)).total_seconds()
    idle = (workers * total - busy) / len(rows)
    return (
        f"workers busy {100 * busy / (workers * total):.0f} %, idle worker time per trial {idle:.2f} s;"
        f" first trial started after {first:.2f} s, study ended {last:.2f} s after the last trial"
    )


def run(workers: int, trials: int, sleep: float, server: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        env = dict(
            os.environ,
            DATABASE_URL=fresh_database(server),
            HPO_VAR_DIR=folder,
            HPO_TRIAL_MODULE="bench.sleep_trial_process",
            SLEEP_SECONDS=str(sleep),
            Q_WORKERS=str(workers),
            LOG_LEVEL="WARNING",
        )
        for command in (["migrate", "--noinput"], ["bootstrap_demo"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(5)  # the cluster's workers start
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "manage.py", "run_study", "--queue", "--trials", str(trials),
                 "--concurrency", str(workers), "--max-epochs", "1", "--json"],
                cwd=ROOT, env=env, capture_output=True, text=True,
            )
            elapsed = time.perf_counter() - started
        finally:
            cluster.send_signal(signal.SIGTERM)  # the main process: the cluster's graceful stop
            try:
                cluster.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(cluster.pid, signal.SIGKILL)  # whatever is left of it
            except ProcessLookupError:
                pass
            cluster.wait()
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        if summary["n_complete"] != trials:
            raise SystemExit(f"{workers} workers: {summary}")
        detail = where_time_went(env["DATABASE_URL"], summary["study_id"], workers)
        return study_seconds(env["DATABASE_URL"], summary["study_id"]), elapsed, detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--sleep", type=float, default=2.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 6])
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432"))
    args = parser.parse_args()
    print(f"{args.trials} trials sleeping {args.sleep:g} s each, run_study --queue on a qcluster")
    baseline: float | None = None
    wall_baseline: float | None = None
    for workers in args.workers:
        study_s, wall_s, detail = run(workers, args.trials, args.sleep, args.postgres)
        if workers == 1:
            baseline, wall_baseline = study_s, wall_s
        speedup = baseline / study_s if baseline else float("nan")
        wall_speedup = wall_baseline / wall_s if wall_baseline else float("nan")
        print(
            f"  {workers} worker(s): study {study_s:6.1f} s, speedup {speedup:4.2f} (target >= {0.9 * workers:.1f});"
            f" run_study wall {wall_s:6.1f} s, speedup {wall_speedup:4.2f}\n      ({detail})",
            flush=True,
        )


if __name__ == "__main__":
    main()
