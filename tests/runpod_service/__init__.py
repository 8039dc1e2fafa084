"""Tests of the RunPod handler and the emulator. ``run_with_model`` is a TensorFlow-free trial
function for ``RUNPOD_TRIAL_FUNCTION`` that saves a model file and details like a real trial."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workers.engine.messages import Started, TrialResult, TrialSpec


def run_with_model(spec: TrialSpec, channel: Any) -> TrialResult:
    """Saves ``params["model_bytes"]`` bytes as model.keras; ``Started.worker`` reports the spec
    as the worker changed it (JSON of wait_for_pruner, gpus, artifacts_dir)."""
    folder = Path(spec.artifacts_dir)
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model.keras"
    size = int(spec.params.get("model_bytes", 1000))
    model.write_bytes((bytes(range(256)) * (size // 256 + 1))[:size])
    details = folder / "details.json"
    details.write_text(json.dumps({"gradient_norms": {"dense": [0.5]}, "history": []}))
    seen = {"wait_for_pruner": spec.wait_for_pruner, "gpus": spec.gpus, "artifacts_dir": spec.artifacts_dir}
    channel.send(Started(spec.trial_id, {"layers": []}, 1, worker=json.dumps(seen)))
    return TrialResult(spec.trial_id, "complete", accuracy=0.5, artifacts={"model": str(model), "details": str(details)})
