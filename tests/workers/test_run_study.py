"""``manage.py run_study`` end to end: real trials (tiny slices of digits), its JSON summary,
exit codes, bad input, and Ctrl+C."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from studies.models import Status, Study
from tests.conftest import database_url_for_subprocess
from trials.models import Trial, TrialEpoch

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def run_study(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("run_study", *args, "--json", "--progress-every", "0.5", stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_run_study_trains_real_models_and_reports_json(
    workspace: Any, owner: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path
    summary = run_study(
        "--workspace", workspace.slug, "--name", "tiny", "--trials", "2", "--max-epochs", "2",
        "--sample-fraction", "0.3", "--seed", "1", "--set", "conv_blocks=1", "--mode", "health",
    )
    study = Study.objects.get(pk=summary["study_id"])
    assert study.status == Status.COMPLETED and summary["status"] == "completed"
    assert {k: summary[k] for k in ("n_trials", "n_complete", "n_pruned", "n_failed")} == {
        "n_trials": 2, "n_complete": 2, "n_pruned": 0, "n_failed": 0,
    }
    best = Trial.objects.get(study=study, number=summary["best_trial"])
    assert summary["best_value"] == best.value == best.total_score
    assert summary["best_accuracy"] == best.accuracy and 0 < best.accuracy <= 1
    assert summary["best_health"] == best.health_score
    assert summary["best_params"]["conv_blocks"] == 1
    assert set(summary) >= {"best_model_path", "duration_s"}
    model = Path(summary["best_model_path"])
    assert model.is_file() and tmp_path in model.parents
    # Only the best trial's model is kept; every trial keeps its details for the trial page.
    assert sorted(p.parent.name for p in tmp_path.rglob("model.keras")) == [str(best.number)]
    assert len(list(tmp_path.rglob("details.json"))) == 2
    for trial in Trial.objects.filter(study=study):
        assert trial.architecture["layers"] and trial.param_count
        assert TrialEpoch.objects.filter(trial=trial).count() == stored_params(trial)["epochs"]
        assert set(trial.health_metrics) == {"score", "components", "metrics"}


def stored_params(trial: Trial) -> dict[str, Any]:
    from studies.optuna_storage import DjangoStorage

    return DjangoStorage().get_trial(trial.pk).params


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--dataset", "svhn"], "Unknown data set 'svhn'; choose one of digits"),
        (["--set", "filters=7"], "--set filters=7: filters"),
        (["--set", "colour=red"], "--set colour=red"),
        (["--trials", "0"], "--n-trials: n_trials must be a whole number from 1"),
        (["--workspace", "nowhere"], "No workspace 'nowhere'"),
        (["--pruner", "asha"], "--pruner: 'asha' is not allowed"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(workspace: Any, owner: Any, args: list[str], says: str) -> None:
    if "--workspace" not in args:
        args = ["--workspace", workspace.slug, *args]
    with pytest.raises(CommandError) as error:
        call_command("run_study", *args, stdout=io.StringIO())
    assert error.value.returncode == 2
    assert says in str(error.value)
    assert not Study.objects.exists()


def test_ctrl_c_cancels_cleanly_keeping_completed_trials(workspace: Any, owner: Any, tmp_path: Path) -> None:
    env = dict(os.environ, DATABASE_URL=database_url_for_subprocess(), HPO_VAR_DIR=str(tmp_path), LOG_LEVEL="WARNING")
    command = [
        sys.executable, "manage.py", "run_study", "--workspace", workspace.slug, "--trials", "20",
        "--max-epochs", "10", "--set", "epochs=10", "--sample-fraction", "0.5", "--json",
        "--progress-every", "0.2",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 120
    for line in process.stderr:  # wait for one finished trial and a second one training
        if line.startswith("trials 1/") and ":e" in line and "running 1" in line:
            break
        assert time.monotonic() < deadline, "no progress"
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl+C does
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "cancelled"
    study = Study.objects.get(pk=summary["study_id"])
    assert study.status == Status.CANCELLED
    states = sorted(Trial.objects.filter(study=study).values_list("state", flat=True))
    assert states == ["COMPLETE", "FAIL"]  # the finished trial kept, the running one stopped
    assert "Cancelled" in Trial.objects.get(study=study, state="FAIL").error_message
