"""How a finished trial is scored: the number told to Optuna (which maximizes it) and shown
as the trial's total score. Pure Python: no TensorFlow, no Django.

Two modes, chosen per study:

``simple``
    total = accuracy (the best validation accuracy, in [0, 1]).

``health``
    total = w_accuracy * accuracy + w_health * health_score, where ``health_score`` in
    [0, 1] comes from ``workers.engine.health.analyze_health``. Default weights:
    ``accuracy`` 0.7, ``health`` 0.3 (``DEFAULT_WEIGHTS``). A study may override them with
    any non-negative numbers for the keys ``accuracy`` and ``health``; a missing key takes
    its default, and the pair is normalized to sum to 1 (``{"accuracy": 2, "health": 2}``
    is 0.5 / 0.5). A missing health score (the analysis could not run) counts as 0.

In both modes a trial without an accuracy (or with a NaN or infinite one) has no score:
``None``. Inputs are clipped to [0, 1], so the total is always in [0, 1].
"""
from __future__ import annotations

import math
from numbers import Real

DEFAULT_WEIGHTS: dict[str, float] = {"accuracy": 0.7, "health": 0.3}
MODES: tuple[str, ...] = ("simple", "health")


def normalize_weights(weights: dict[str, float] | None) -> dict[str, float]:
    """The mode-``health`` weights, defaults filled in, summing to 1.

    ``ValueError`` names the offending key or value and the allowed keys.
    """
    allowed = ", ".join(sorted(DEFAULT_WEIGHTS))
    if weights is None:
        weights = {}
    if not isinstance(weights, dict):
        raise ValueError(f"health weights must be a mapping of {allowed} to numbers")
    unknown = sorted(set(weights) - set(DEFAULT_WEIGHTS), key=str)
    if unknown:
        raise ValueError(f"unknown health weight keys {unknown}; allowed keys: {allowed}")
    filled = {**DEFAULT_WEIGHTS, **weights}
    for key, value in filled.items():
        # bool is a Real; True as a weight is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"health weight {key!r} must be a finite number, got {value!r}")
        if value < 0:
            raise ValueError(f"health weight {key!r} must not be negative, got {value!r}")
    total = sum(float(value) for value in filled.values())
    if total <= 0:
        raise ValueError(f"health weights must not all be zero (keys: {allowed})")
    return {key: float(value) / total for key, value in filled.items()}


def total_score(
    *,
    accuracy: float | None,
    health_score: float | None,
    mode: str,
    weights: dict[str, float] | None = None,
) -> float | None:
    """The trial's total score in [0, 1], or ``None`` when it has no accuracy.

    ``ValueError`` for an unknown mode or invalid weights (checked even without accuracy,
    so a bad study setting fails on its first trial).
    """
    if mode not in MODES:
        raise ValueError(f"unknown scoring mode {mode!r}; allowed: {', '.join(MODES)}")
    normalized = normalize_weights(weights) if mode == "health" else None
    if accuracy is None or not math.isfinite(accuracy):
        return None
    accuracy = _unit(accuracy)
    if normalized is None:
        return accuracy
    health = 0.0 if health_score is None or not math.isfinite(health_score) else _unit(health_score)
    return _unit(normalized["accuracy"] * accuracy + normalized["health"] * health)


def _unit(value: float) -> float:
    return min(1.0, max(0.0, float(value)))
