"""Search quality on `digits`: `run_study` with 10 trials of at most 10 epochs, per seed.

    .venv/bin/python bench/quality.py [--seeds 0 1 2 3 4] [--trials 10]

Prints each seed's best validation accuracy and the minimum over the seeds. Peers on the
same budget (KerasTuner's RandomSearch, a plain in-process Optuna TPE loop with a comparable
CNN space) reach 0.986 to 0.994 on a 2-core machine; the target is at least 0.985 for any
seed. Each run uses its own SQLite database in a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(seed: int, trials: int, folder: Path) -> dict:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{folder / 'quality.sqlite3'}", HPO_VAR_DIR=str(folder), LOG_LEVEL="WARNING")
    for command in (["migrate", "--noinput"], ["bootstrap_demo"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
    done = subprocess.run(
        [sys.executable, "manage.py", "run_study", "--dataset", "digits", "--trials", str(trials),
         "--max-epochs", "10", "--seed", str(seed), "--json", "--name", f"quality-{seed}"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    best = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            summary = run(seed, args.trials, Path(folder))
        best.append(summary["best_accuracy"])
        print(
            f"seed {seed}: best validation accuracy {summary['best_accuracy']:.4f} "
            f"(trial {summary['best_trial']}, {summary['n_complete']} complete, {summary['duration_s']:.0f} s)",
            flush=True,
        )
    print(f"minimum over {len(best)} seeds: {min(best):.4f} (target >= 0.985)")


if __name__ == "__main__":
    main()
