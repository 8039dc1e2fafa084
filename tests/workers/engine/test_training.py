"""The training loop inside a trial process, driven in-process through a scripted channel:
real Keras on tiny slices of digits and of a text set the test writes."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from workers.engine.messages import Control, EpochEnd, Message, Progress, Started, TrialResult, TrialSpec
from workers.engine.training import run_trial

CNN = {
    "conv_blocks": 1, "filters": 16, "kernel_size": 3, "activation": "relu", "pooling": "max",
    "batch_norm": False, "dropout": 0.1, "dense_layers": 1, "dense_units": 32,
    "optimizer": "adam", "learning_rate": 0.005, "batch_size": 32, "epochs": 3,
}
LSTM = {
    "embedding_dim": 16, "lstm_layers": 1, "lstm_units": 16, "bidirectional": True, "dropout": 0.0,
    "dense_layers": 0, "dense_units": 16, "optimizer": "adam", "learning_rate": 0.01,
    "batch_size": 16, "epochs": 3,
}


class ScriptedChannel:
    """Answers every epoch with ``answers`` (default "continue"); can stop after N batches."""

    def __init__(self, answers: list[str] | None = None, stop_after_batches: int | None = None) -> None:
        self.sent: list[Message] = []
        self.answers = list(answers or [])
        self.stop_after_batches = stop_after_batches
        self.batches_polled = 0

    def send(self, message: Message) -> None:
        self.sent.append(message)

    def poll_control(self) -> Control | None:
        self.batches_polled += 1
        if self.stop_after_batches is not None and self.batches_polled >= self.stop_after_batches:
            return Control("stop")
        return None

    def wait_control(self) -> Control:
        return Control(self.answers.pop(0) if self.answers else "continue")

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.sent if isinstance(m, kind)]


def digits_spec(tmp_path: Path, **changes: Any) -> TrialSpec:
    fields: dict[str, Any] = dict(
        study_id=1, trial_id=7, trial_number=0, dataset="digits", params=dict(CNN),
        seed=3, sample_fraction=0.4, progress_every_batches=5, artifacts_dir=str(tmp_path / "trial"),
    )
    fields.update(changes)
    return TrialSpec(**fields)


def test_a_cnn_trial_completes_with_everything_the_trial_page_needs(tmp_path: Path) -> None:
    channel = ScriptedChannel()
    result = run_trial(digits_spec(tmp_path, mode="health"), channel)
    assert result.status == "complete", result.traceback
    started = channel.of(Started)
    assert len(started) == 1 and started[0].architecture["family"] == "cnn"
    assert [e.epoch for e in channel.of(EpochEnd)] == [1, 2, 3]
    assert channel.of(Progress) and all(0 < p.fraction <= 1 for p in channel.of(Progress))
    assert result.accuracy == max(e.metrics["val_accuracy"] for e in channel.of(EpochEnd))
    assert 0 <= result.health_score <= 1 and set(result.health["components"]) >= {"gradients", "dead_units"}
    assert result.total_score == pytest.approx(0.7 * result.accuracy + 0.3 * result.health_score)
    assert len(result.history) == 3 and set(result.history[0]) >= {"loss", "val_accuracy", "seconds"}
    matrix = result.confusion_matrix
    assert len(matrix) == 10 and sum(map(sum, matrix)) > 0
    assert Path(result.artifacts["model"]).is_file()
    details = json.loads(Path(result.artifacts["details"]).read_text())
    assert details["gradient_norms"] and details["weight_histograms"] and details["activation_maps"]


def test_same_seed_and_params_give_the_same_accuracy(tmp_path: Path) -> None:
    first = run_trial(digits_spec(tmp_path, save_model=False), ScriptedChannel())
    second = run_trial(digits_spec(tmp_path, save_model=False), ScriptedChannel())
    assert first.accuracy == pytest.approx(second.accuracy, abs=1e-6)


def test_prune_answer_stops_after_that_epoch(tmp_path: Path) -> None:
    channel = ScriptedChannel(answers=["continue", "prune"])
    result = run_trial(digits_spec(tmp_path), channel)
    assert result.status == "pruned" and "epoch 2" in result.reason
    assert len(result.history) == 2
    assert result.health_score is not None  # every trial is scored, whatever its end


def test_stop_ends_the_trial_within_one_batch(tmp_path: Path) -> None:
    channel = ScriptedChannel(stop_after_batches=3)
    result = run_trial(digits_spec(tmp_path), channel)
    assert result.status == "cancelled"
    assert channel.batches_polled == 3  # no batch ran after the stop was seen
    assert channel.of(EpochEnd) == [] and "model" not in result.artifacts


def test_a_diverging_loss_ends_the_trial_as_unhealthy_not_a_crash(tmp_path: Path) -> None:
    params = dict(CNN, optimizer="sgd", learning_rate=1e9, activation="elu")
    result = run_trial(digits_spec(tmp_path, params=params), ScriptedChannel())
    assert result.status == "unhealthy", result.reason
    assert "diverged" in result.reason
    assert result.health_score == 0.0 and result.health["components"]["finite"] == 0.0


def test_bad_data_fails_the_trial_with_a_readable_reason(tmp_path: Path) -> None:
    spec = digits_spec(tmp_path, dataset="upload", dataset_options={"path": str(tmp_path / "missing.npz")})
    result = run_trial(spec, ScriptedChannel())
    assert result.status == "failed"
    assert "missing.npz" in result.reason and result.traceback


def test_an_lstm_trial_trains_on_a_small_text_set(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["text", "label"])
        for i in range(120):
            good = i % 2 == 0
            writer.writerow([("great lovely fine" if good else "awful bad poor") + f" item {i}", "pos" if good else "neg"])
    spec = TrialSpec(
        study_id=1, trial_id=9, trial_number=0, dataset="upload", params=LSTM, seed=0,
        dataset_options={"path": str(path), "vocab_size": 200, "sequence_length": 12},
        artifacts_dir=str(tmp_path / "lstm"),
    )
    channel = ScriptedChannel()
    result = run_trial(spec, channel)
    assert result.status == "complete", result.traceback
    assert channel.of(Started)[0].architecture["family"] == "lstm"
    assert result.accuracy is not None and result.accuracy >= 0.9  # a trivially separable set
    assert len(result.confusion_matrix) == 2


def test_without_a_pruner_the_trial_does_not_wait_after_each_epoch(tmp_path: Path) -> None:
    channel = ScriptedChannel(answers=["prune"])  # would prune, were it asked
    result = run_trial(digits_spec(tmp_path, wait_for_pruner=False, save_model=False), channel)
    assert result.status == "complete" and len(result.history) == 3
    assert channel.answers == ["prune"]  # never asked
