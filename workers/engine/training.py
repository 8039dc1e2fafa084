"""Train one trial, inside its own process: the heart of the engine.

``run_trial(spec, channel)`` loads the data set by name, builds the model (inside the
distribution strategy's scope), trains it while talking to its parent through ``channel``
(progress every N batches, each epoch's score and a wait for continue / prune / stop), then
analyses its health, scores it and saves what the trial page shows. It never raises: every
ending is a ``TrialResult`` (complete, pruned, unhealthy, cancelled or failed).

Reproducible: the same seed and params give the same accuracy on CPU within float noise
(``keras.utils.set_random_seed`` seeds Python, NumPy and TensorFlow; data shuffling uses the
same seed).
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from workers.engine import scoring
from workers.engine.messages import Control, EpochEnd, Message, Progress, Started, TrialResult, TrialSpec

# A loss above this (or not finite) ends the trial as unhealthy: it has diverged.
EXPLODING_LOSS = 1e4
PROBE_SAMPLES = 256


class Channel(Protocol):
    """The trial's line to its parent (a pipe locally, HTTP on RunPod)."""

    def send(self, message: Message) -> None: ...

    def poll_control(self) -> Control | None:
        """A control that arrived since the last call, without waiting."""

    def wait_control(self) -> Control:
        """Block until the parent answers an ``EpochEnd``."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _make_callback(spec: TrialSpec, channel: Channel, epochs: int, batches: int) -> Any:
    import keras

    class TrialCallback(keras.callbacks.Callback):
        """Progress, cancellation within a batch, NaN guard, pruning and best weights."""

        def __init__(self) -> None:
            super().__init__()
            self.status = "complete"
            self.reason = ""
            self.history: list[dict[str, float]] = []
            self.best_accuracy: float | None = None
            self.best_weights: list[Any] | None = None
            self.epoch = 0
            self.epoch_started = time.perf_counter()

        def _end(self, status: str, reason: str) -> None:
            self.status, self.reason = status, reason
            self.model.stop_training = True

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.epoch = epoch + 1
            self.epoch_started = time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            logs = logs or {}
            loss = _finite(logs.get("loss"))
            if loss is None or loss > EXPLODING_LOSS:
                what = "not a number" if loss is None else f"{loss:.3g}, above {EXPLODING_LOSS:g}"
                self._end("unhealthy", f"The training loss diverged ({what}) in epoch {self.epoch}, batch {batch + 1}.")
                return
            control = channel.poll_control()
            if control is not None and control.action == "stop":
                self._end("cancelled", "Cancelled while training.")
                return
            done = batch + 1
            if done % spec.progress_every_batches == 0 or done == batches:
                metrics = {k: float(v) for k, v in logs.items() if _finite(v) is not None}
                channel.send(Progress(spec.trial_id, self.epoch, epochs, done, batches, metrics))

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = logs or {}
            row = {
                key: float(logs[key])
                for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                if key in logs
            }
            row["seconds"] = time.perf_counter() - self.epoch_started
            if self.status != "complete":  # stopped inside this epoch: keep it out
                return
            self.history.append(row)
            val_accuracy = _finite(row.get("val_accuracy"))
            if val_accuracy is not None and (self.best_accuracy is None or val_accuracy > self.best_accuracy):
                self.best_accuracy = val_accuracy
                self.best_weights = self.model.get_weights()
            channel.send(
                EpochEnd(
                    trial_id=spec.trial_id,
                    epoch=epoch + 1,
                    epochs=epochs,
                    metrics={k: v for k, v in row.items() if k != "seconds"},
                    seconds=row["seconds"],
                    score=val_accuracy if val_accuracy is not None else 0.0,
                )
            )
            if not spec.wait_for_pruner:
                return  # nothing to ask: train on; a stop comes between batches
            answer = channel.wait_control()
            if answer.action == "prune":
                self._end("pruned", f"Pruned after epoch {epoch + 1}.")
            elif answer.action == "stop":
                self._end("cancelled", f"Cancelled after epoch {epoch + 1}.")

    return TrialCallback()


def _confusion_matrix(model: Any, x: np.ndarray, y: np.ndarray, n_classes: int) -> list[list[int]]:
    predicted = np.argmax(model.predict(x, verbose=0, batch_size=512), axis=1)
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y.astype(np.int64), predicted), 1)
    return matrix.tolist()


def _save_artifacts(spec: TrialSpec, model: Any, report: dict[str, Any], result: dict[str, Any]) -> dict[str, str]:
    if not spec.artifacts_dir:
        return {}
    folder = Path(spec.artifacts_dir)
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = {}
    details = folder / "details.json"
    details.write_text(
        json.dumps(
            {
                "history": result["history"],
                "confusion_matrix": result["confusion_matrix"],
                "gradient_norms": report.get("gradient_norms", {}),
                "weight_histograms": report.get("weight_histograms", {}),
                "activation_maps": report.get("activation_maps", []),
            },
            allow_nan=False,
        )
    )
    artifacts["details"] = str(details)
    if spec.save_model:
        path = folder / "model.keras"
        model.save(path)
        artifacts["model"] = str(path)
    return artifacts


def run_trial(spec: TrialSpec, channel: Channel) -> TrialResult:
    """Train ``spec`` and return how it ended; never raises."""
    started = time.perf_counter()
    try:
        return _run(spec, channel, started)
    except Exception as error:  # a trial's failure must never take its worker down
        kind = type(error).__name__
        reason = f"{kind}: {error}"
        if "ResourceExhausted" in kind or "out of memory" in str(error).lower():
            reason = f"Out of memory: {error}"
        return TrialResult(
            trial_id=spec.trial_id,
            status="failed",
            reason=reason[:2000],
            traceback=traceback.format_exc()[-20000:],
            seconds=time.perf_counter() - started,
            worker=worker_name(),
        )


def _run(spec: TrialSpec, channel: Channel, started: float) -> TrialResult:
    import keras

    from workers.engine.architecture import extract_architecture
    from workers.engine.builder import build_model
    from workers.engine.datasets import load_dataset
    from workers.engine.devices import make_strategy, strategy_name
    from workers.engine.health import analyze_health

    keras.utils.set_random_seed(spec.seed)
    data = load_dataset(
        spec.dataset,
        seed=spec.seed,
        sample_fraction=spec.sample_fraction,
        validation_split=spec.validation_split,
        options=spec.dataset_options,
    )
    params = dict(spec.params)
    epochs = int(params.get("epochs", spec.max_epochs))
    batch_size = int(params.get("batch_size", 32))
    visible_gpus = len(spec.gpus)
    with make_strategy(visible_gpus).scope():
        model = build_model(
            data.kind, params, input_shape=data.input_shape, n_classes=data.n_classes, vocab_size=data.vocab_size
        )
    architecture = extract_architecture(model)
    channel.send(
        Started(
            trial_id=spec.trial_id,
            architecture=architecture,
            param_count=int(model.count_params()),
            strategy=strategy_name(visible_gpus),
            worker=worker_name(),
        )
    )
    batches = max(1, math.ceil(len(data.x_train) / batch_size))
    callback = _make_callback(spec, channel, epochs, batches)
    model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[callback],
    )
    if callback.status == "cancelled":  # stop quickly: no analysis, nothing saved
        return TrialResult(
            trial_id=spec.trial_id,
            status="cancelled",
            reason=callback.reason,
            accuracy=callback.best_accuracy,
            architecture=architecture,
            param_count=int(model.count_params()),
            history=callback.history,
            seconds=time.perf_counter() - started,
            worker=worker_name(),
        )
    if callback.best_weights is not None:
        model.set_weights(callback.best_weights)  # the model kept is the best epoch's

    probe = slice(0, PROBE_SAMPLES)
    report = analyze_health(model, data.x_val[probe], data.y_val[probe], callback.history).to_dict()
    if callback.status == "unhealthy":
        report["components"] = {**report.get("components", {}), "finite": 0.0}
        report["score"] = 0.0
    accuracy = callback.best_accuracy
    health_score = float(report["score"])
    total = scoring.total_score(accuracy=accuracy, health_score=health_score, mode=spec.mode, weights=spec.health_weights or None)
    result_fields: dict[str, Any] = {
        "history": callback.history,
        "confusion_matrix": _confusion_matrix(model, data.x_val, data.y_val, data.n_classes),
    }
    artifacts = {}
    if callback.status in ("complete", "unhealthy"):
        artifacts = _save_artifacts(spec, model, report, result_fields)
    return TrialResult(
        trial_id=spec.trial_id,
        status=callback.status,
        reason=callback.reason,
        accuracy=accuracy,
        health_score=health_score,
        total_score=total,
        health={"score": health_score, "components": report.get("components", {}), "metrics": report.get("metrics", {})},
        architecture=architecture,
        param_count=int(model.count_params()),
        artifacts=artifacts,
        seconds=time.perf_counter() - started,
        worker=worker_name(),
        **result_fields,
    )
