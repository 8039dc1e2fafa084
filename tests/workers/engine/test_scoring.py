"""The trial score told to Optuna: simple and health modes, weight validation."""
from __future__ import annotations

import math

import pytest

from workers.engine.scoring import (
    DEFAULT_WEIGHTS,
    normalize_weights,
    total_score,
)


def test_simple_mode_is_the_accuracy() -> None:
    assert total_score(accuracy=0.83, health_score=0.1, mode="simple") == pytest.approx(0.83)
    assert total_score(accuracy=0.83, health_score=None, mode="simple") == pytest.approx(0.83)


def test_health_mode_weighs_accuracy_and_health_with_the_defaults() -> None:
    score = total_score(accuracy=0.9, health_score=0.5, mode="health")
    assert score == pytest.approx(0.7 * 0.9 + 0.3 * 0.5)


def test_health_mode_uses_custom_weights_normalized() -> None:
    score = total_score(
        accuracy=0.9, health_score=0.5, mode="health", weights={"accuracy": 1, "health": 1}
    )
    assert score == pytest.approx(0.7)


def test_missing_health_score_counts_as_zero_in_health_mode() -> None:
    assert total_score(accuracy=1.0, health_score=None, mode="health") == pytest.approx(0.7)


def test_no_accuracy_means_no_score() -> None:
    assert total_score(accuracy=None, health_score=0.9, mode="health") is None
    assert total_score(accuracy=None, health_score=None, mode="simple") is None
    assert total_score(accuracy=math.nan, health_score=0.9, mode="simple") is None


def test_scores_stay_in_the_unit_interval() -> None:
    assert total_score(accuracy=1.2, health_score=1.5, mode="health") == 1.0
    assert total_score(accuracy=-0.1, health_score=0.0, mode="simple") == 0.0


def test_unknown_mode_lists_the_modes() -> None:
    with pytest.raises(ValueError, match="simple.*health"):
        total_score(accuracy=0.5, health_score=0.5, mode="fancy")
    with pytest.raises(ValueError, match="fancy"):
        total_score(accuracy=None, health_score=None, mode="fancy")


def test_default_weights_sum_to_one() -> None:
    assert normalize_weights(None) == pytest.approx(DEFAULT_WEIGHTS)
    assert normalize_weights({}) == pytest.approx(DEFAULT_WEIGHTS)
    assert sum(DEFAULT_WEIGHTS.values()) == pytest.approx(1.0)


def test_missing_weight_takes_its_default_before_normalizing() -> None:
    assert normalize_weights({"accuracy": 0.3}) == pytest.approx({"accuracy": 0.5, "health": 0.5})
    assert normalize_weights({"health": 0}) == {"accuracy": 1.0, "health": 0.0}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"speed": 1}, r"unknown health weight keys \['speed'\]; allowed keys: accuracy, health"),
        ({"accuracy": -1}, "'accuracy' must not be negative"),
        ({"health": "high"}, "'health' must be a finite number"),
        ({"health": True}, "'health' must be a finite number"),
        ({"health": math.inf}, "'health' must be a finite number"),
        ({"accuracy": 0, "health": 0}, "must not all be zero"),
        (["accuracy"], "must be a mapping"),
    ],
)
def test_invalid_weights_are_rejected_with_the_reason(weights: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_weights(weights)  # type: ignore[arg-type]


def test_invalid_weights_fail_in_health_mode_only() -> None:
    with pytest.raises(ValueError, match="allowed keys"):
        total_score(accuracy=0.5, health_score=0.5, mode="health", weights={"speed": 1})
    # simple mode ignores the weights: a study may keep them while switching modes
    assert total_score(accuracy=0.5, health_score=0.5, mode="simple", weights={"speed": 1}) == 0.5
