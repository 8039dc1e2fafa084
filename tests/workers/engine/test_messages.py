"""The messages that cross processes: round trips, versions, and the size of a spec."""
from __future__ import annotations

import json
import math

import pytest

from workers.engine.messages import (
    SCHEMA_VERSION,
    Control,
    EpochEnd,
    MessageError,
    Progress,
    Started,
    TrialResult,
    TrialSpec,
    message_from_json,
)

SPEC = TrialSpec(
    study_id=12,
    trial_id=345,
    trial_number=7,
    dataset="cifar10",
    params={
        "conv_blocks": 3, "filters": 64, "kernel_size": 3, "activation": "relu", "pooling": "max",
        "batch_norm": True, "dropout": 0.25, "dense_layers": 2, "dense_units": 128,
        "optimizer": "adam", "learning_rate": 0.00123456789, "batch_size": 64, "epochs": 10,
    },
    seed=42,
    sample_fraction=0.5,
    mode="health",
    health_weights={"accuracy": 0.7, "health": 0.3},
    gpus=[0, 1],
    artifacts_dir="/srv/hpo/media/studies/12/trials/7",
)


@pytest.mark.parametrize(
    "message",
    [
        SPEC,
        Started(1, {"layers": [{"name": "conv_1"}]}, 1234, "mirrored", "host:1"),
        Progress(1, 2, 10, 5, 20, {"loss": 0.5}),
        EpochEnd(1, 2, 10, {"loss": 0.4, "val_accuracy": 0.9}, 1.5, 0.9),
        Control("prune"),
        TrialResult(1, "complete", accuracy=0.98, history=[{"loss": 0.1}], confusion_matrix=[[1, 0], [0, 1]]),
    ],
)
def test_every_message_round_trips(message: object) -> None:
    assert message_from_json(message.to_json()) == message  # type: ignore[attr-defined]


def test_spec_stays_under_one_kilobyte() -> None:
    assert len(SPEC.to_json().encode()) < 1024


def test_nan_losses_arrive() -> None:
    epoch = message_from_json(EpochEnd(1, 1, 2, {"loss": math.nan}, 0.1, 0.0).to_json())
    assert isinstance(epoch, EpochEnd) and math.isnan(epoch.metrics["loss"])


def test_another_version_is_refused_with_both_versions_named() -> None:
    data = json.loads(Control("stop").to_json())
    data["version"] = SCHEMA_VERSION + 1
    with pytest.raises(MessageError, match=f"version {SCHEMA_VERSION + 1} is not {SCHEMA_VERSION}"):
        message_from_json(json.dumps(data))


def test_unknown_type_fields_and_actions_are_refused() -> None:
    with pytest.raises(MessageError, match="unknown message type"):
        message_from_json('{"type": "trial.bogus", "version": 1}')
    data = json.loads(Control("stop").to_json())
    data["extra"] = 1
    with pytest.raises(MessageError, match="unknown fields"):
        message_from_json(json.dumps(data))
    with pytest.raises(MessageError, match="not one of"):
        Control("pause")
    with pytest.raises(MessageError, match="not JSON"):
        message_from_json("{")
