"""The issue's parity requirement, with real TensorFlow: the same TrialSpec trained through the
emulated RunPod endpoint (the real handler in a worker process) and locally
(``run_trial`` in this process) reaches the same validation accuracy within 0.5 points."""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
import runpod

from runpod_service.emulator import Emulator
from workers.engine.messages import Control, Message, TrialResult, TrialSpec

CNN = {
    "conv_blocks": 1, "filters": 16, "kernel_size": 3, "activation": "relu", "pooling": "max",
    "batch_norm": False, "dropout": 0.1, "dense_layers": 1, "dense_units": 32,
    "optimizer": "adam", "learning_rate": 0.005, "batch_size": 32, "epochs": 2,
}


class LocalChannel:
    def send(self, message: Message) -> None:
        pass

    def poll_control(self) -> Control | None:
        return None

    def wait_control(self) -> Control:
        return Control("continue")


def test_runpod_and_local_training_agree_within_half_a_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = TrialSpec(study_id=1, trial_id=11, trial_number=0, dataset="digits", params=dict(CNN), seed=0,
                     max_epochs=2, sample_fraction=0.3, artifacts_dir=str(tmp_path / "local"))
    with Emulator(workers=1, env={"RUNPOD_TRIAL_FUNCTION": "workers.engine.training:run_trial"}) as emulator:
        monkeypatch.setattr(runpod, "api_key", "parity")
        monkeypatch.setattr(runpod, "endpoint_url_base", emulator.url)
        job = runpod.Endpoint(emulator.endpoint).run(spec.to_dict())
        from workers.engine.training import run_trial

        local = run_trial(spec, LocalChannel())  # meanwhile, here
        output = job.output(timeout=120)
    remote = TrialResult.from_dict(output[-1])
    assert local.status == remote.status == "complete", remote.traceback or local.traceback
    assert [item["type"] for item in output].count("trial.epoch") == 2
    assert len(remote.history) == len(local.history) == 2
    assert abs(remote.accuracy - local.accuracy) * 100 <= 0.5, (remote.accuracy, local.accuracy)
    assert remote.confusion_matrix and remote.architecture["family"] == "cnn" and remote.health["components"]
    model: dict[str, Any] = output[-2]["model"]
    content = base64.b64decode(model["base64"])
    assert model["delivery"] == "inline" and model["sha256"] == hashlib.sha256(content).hexdigest()
    assert abs(model["size_bytes"] - Path(local.artifacts["model"]).stat().st_size) < 0.05 * model["size_bytes"]
