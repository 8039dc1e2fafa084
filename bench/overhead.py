"""What the platform costs over a plain Optuna + Keras script, in time and in memory.

    .venv/bin/python bench/overhead.py [--trials 6] [--memory-trials 30]

Time: the same trials (same seed, the same enqueued params) on `digits`, once through the
platform's `StudyRunner`, which `run_study` uses (a process per trial, ORM storage, health
analysis, artifacts; a short script makes the study and enqueues the params, as
`run_study` has no option to enqueue them), and once by a plain script that trains them one after the other in one process with Optuna's
in-memory storage. Both are timed as whole commands (Python start to exit), so each pays
its own TensorFlow import. Prints the wall-time ratio (target: at most 1.15).

Memory: a study of `--memory-trials` short trials through run_study, sampling the parent's
RSS after each finished trial; prints the RSS after 5 and after the last trial (target: within
10 %). The parent never imports TensorFlow, and every trial trains in its own process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# Six CNNs from the digits search space: small and large, every optimizer, with and without
# batch norm; all 10 epochs.
TRIALS: list[dict[str, Any]] = [
    {"conv_blocks": 2, "filters": 32, "kernel_size": 3, "activation": "relu", "pooling": "max",
     "batch_norm": False, "dropout": 0.2, "dense_layers": 1, "dense_units": 64,
     "optimizer": "adam", "learning_rate": 0.002, "batch_size": 32, "epochs": 10},
    {"conv_blocks": 1, "filters": 16, "kernel_size": 3, "activation": "elu", "pooling": "avg",
     "batch_norm": True, "dropout": 0.1, "dense_layers": 0, "dense_units": 32,
     "optimizer": "rmsprop", "learning_rate": 0.001, "batch_size": 64, "epochs": 10},
    {"conv_blocks": 3, "filters": 32, "kernel_size": 3, "activation": "relu", "pooling": "max",
     "batch_norm": True, "dropout": 0.3, "dense_layers": 1, "dense_units": 128,
     "optimizer": "nadam", "learning_rate": 0.003, "batch_size": 32, "epochs": 10},
    {"conv_blocks": 2, "filters": 16, "kernel_size": 5, "activation": "tanh", "pooling": "none",
     "batch_norm": False, "dropout": 0.0, "dense_layers": 2, "dense_units": 64,
     "optimizer": "sgd", "learning_rate": 0.01, "batch_size": 16, "epochs": 10},
    {"conv_blocks": 2, "filters": 64, "kernel_size": 3, "activation": "selu", "pooling": "max",
     "batch_norm": False, "dropout": 0.2, "dense_layers": 1, "dense_units": 96,
     "optimizer": "adam", "learning_rate": 0.001, "batch_size": 64, "epochs": 10},
    {"conv_blocks": 1, "filters": 32, "kernel_size": 5, "activation": "relu", "pooling": "avg",
     "batch_norm": True, "dropout": 0.4, "dense_layers": 1, "dense_units": 32,
     "optimizer": "rmsprop", "learning_rate": 0.002, "batch_size": 128, "epochs": 10},
]

PLAIN_SCRIPT = r'''
import json, sys
import numpy as np
import optuna
import keras
from workers.engine.builder import build_model
from workers.engine.datasets import load_dataset
from workers.engine.search_space import suggest_params

params_list = json.loads(sys.argv[1])
data = load_dataset("digits", seed=0)  # the same split as the platform's
x_train, y_train, x_val, y_val = data.x_train, data.y_train, data.x_val, data.y_val

def objective(trial):
    params = suggest_params(trial, "image", {}, max_epochs=10)  # the enqueued values
    keras.utils.set_random_seed(0)
    model = build_model("image", params, input_shape=(8, 8, 1), n_classes=10)
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=params["epochs"],
                        batch_size=params["batch_size"], verbose=0)
    return max(history.history["val_accuracy"])

optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
for params in params_list:
    study.enqueue_trial(params)
study.optimize(objective, n_trials=len(params_list))
print(json.dumps({"best_value": study.best_value}))
'''


def platform_env(var_dir: Path) -> dict[str, str]:
    return dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{var_dir / 'bench.sqlite3'}",
        HPO_VAR_DIR=str(var_dir),
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )


def setup_platform(env: dict[str, str]) -> None:
    for command in (["migrate", "--noinput"], ["bootstrap_demo"]):
        subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)


def set_flags(params: dict[str, Any]) -> list[str]:
    flags = []
    for name, value in params.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        flags += ["--set", f"{name}={text}"]
    return flags


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stdout


def run_platform_trials(env: dict[str, str], trials: list[dict[str, Any]]) -> tuple[float, float]:
    """One study with the trials' params enqueued through the ORM storage, run by the runner
    `run_study` uses; returns the wall time of the whole command and the best value."""
    script = r'''
import json, os, sys, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hpo_platform.settings")
django.setup()
import optuna
from accounts.models import Workspace
from studies.optuna_storage import DjangoStorage
from studies.services import study_create
from workers.runner import StudyRunner
params_list = json.loads(sys.argv[1])
workspace = Workspace.objects.get(slug="demo")
owner = workspace.memberships.get(role="owner").user
study = study_create(user=owner, workspace=workspace, name=f"overhead-{time.time()}", dataset="digits",
                     n_trials=len(params_list), max_epochs=10, seed=0)
optuna_study = optuna.load_study(study_name=study.optuna_name, storage=DjangoStorage())
for params in params_list:
    optuna_study.enqueue_trial(params)
study = StudyRunner(study).run()
best = study.trials.filter(state="COMPLETE").order_by("-value").first()
print(json.dumps({"status": study.status, "best_value": best.value}))
'''
    seconds, out = timed([PYTHON, "-c", script, json.dumps(trials)], env)
    return seconds, json.loads(out.strip().splitlines()[-1])["best_value"]


def measure_memory(env: dict[str, str], n_trials: int) -> tuple[list[float], str]:
    """RSS of the run_study process after each finished trial (sampled from outside)."""
    import psutil

    command = [PYTHON, "manage.py", "run_study", "--dataset", "digits", "--trials", str(n_trials),
               "--max-epochs", "1", "--sample-fraction", "0.3", "--json", "--progress-every", "0.2",
               "--set", "epochs=1"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(process.pid)
    samples: list[float] = []
    last_done = -1
    assert process.stderr is not None

    def watch() -> None:
        nonlocal last_done
        for line in process.stderr:  # type: ignore[union-attr]
            if line.startswith("trials "):
                done = int(line.split()[1].split("/")[0])
                if done != last_done:
                    last_done = done
                    try:
                        samples.append(parent.memory_info().rss / 2**20)
                    except psutil.NoSuchProcess:
                        return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, _ = process.communicate()
    watcher.join(timeout=5)
    return samples, out.strip().splitlines()[-1] if out.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=len(TRIALS))
    parser.add_argument("--memory-trials", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2, help="plain/platform pairs, alternating")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    trials = TRIALS[: args.trials]

    with tempfile.TemporaryDirectory() as folder:
        env = platform_env(Path(folder))
        setup_platform(env)
        plain_times, platform_times = [], []
        print(f"{len(trials)} digits trials, 10 epochs each, same params and seed; {args.rounds} rounds, alternating")
        for round_number in range(1, args.rounds + 1):
            plain_s, plain_out = timed([PYTHON, "-c", PLAIN_SCRIPT, json.dumps(trials)], env)
            platform_s, platform_best = run_platform_trials(env, trials)
            plain_best = json.loads(plain_out.strip().splitlines()[-1])["best_value"]
            plain_times.append(plain_s)
            platform_times.append(platform_s)
            print(f"  round {round_number}: plain Optuna + Keras in one process {plain_s:5.1f} s (best {plain_best:.4f}),"
                  f" platform {platform_s:5.1f} s (best {platform_best:.4f})", flush=True)
        ratio = sum(platform_times) / sum(plain_times)
        print(f"  ratio platform / plain over all rounds: {ratio:.2f} (target <= 1.15)")

        if not args.skip_memory:
            samples, _ = measure_memory(env, args.memory_trials)
            if len(samples) >= 6:
                after_5, last = samples[5], samples[-1]
                print(f"parent RSS after 5 trials {after_5:.1f} MiB, after {len(samples) - 1}: {last:.1f} MiB,"
                      f" change {100 * (last - after_5) / after_5:+.1f} % (target within 10 %)")
            else:
                print(f"memory: only {len(samples)} samples; the run_study output was not as expected")


if __name__ == "__main__":
    main()
