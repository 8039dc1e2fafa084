"""Model health on real tiny Keras models (CPU, a few seconds in all). No database."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from workers.engine.health import (
    ACTIVATION_MAP_CHANNELS,
    COMPONENTS,
    HISTOGRAM_BINS,
    HealthReport,
    analyze_health,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
EPOCH = {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.55, "val_accuracy": 0.78}


def _probe(n: int = 64, features: int = 10, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, features)).astype("float32"), rng.integers(0, classes, n)


def _mlp(*hidden: tuple[str, str | None], features: int = 10) -> keras.Model:
    """Dense layers (name, activation) then a softmax over 3 classes."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((features,))
    x = inputs
    for name, activation in hidden:
        x = keras.layers.Dense(16, activation=activation, name=name)(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs)


def _scale_kernel(model: keras.Model, layer: str, factor: float) -> None:
    kernel = model.get_layer(layer).kernel
    kernel.assign(kernel.numpy() * factor)


def _losses(*values: float) -> list[dict[str, float]]:
    return [{**EPOCH, "loss": value} for value in values]


@pytest.fixture(scope="module")
def trained_cnn() -> tuple[keras.Model, np.ndarray, np.ndarray, list[dict[str, float]]]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8, 8, 1)).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype("int64")  # learnable: is the top half bright?
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(12, 3, activation="relu", padding="same", name="conv")(inputs)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(16, activation="tanh", name="hidden")(h)
    outputs = keras.layers.Dense(2, activation="softmax", name="out")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    fit = model.fit(x, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0).history
    history = [{key: float(values[i]) for key, values in fit.items()} for i in range(3)]
    return model, x, y, history


@pytest.fixture(scope="module")
def cnn_report(trained_cnn: Any) -> HealthReport:
    return analyze_health(*trained_cnn)


def test_trained_cnn_has_score_in_unit_interval_and_every_component(
    cnn_report: HealthReport,
) -> None:
    assert 0.0 <= cnn_report.score <= 1.0
    assert set(cnn_report.components) == set(COMPONENTS)
    assert all(0.0 <= value <= 1.0 for value in cnn_report.components.values())
    assert cnn_report.components["finite"] == 1.0
    assert set(cnn_report.gradient_norms) == {"conv", "hidden", "out"}
    for key in (
        "grad_norm_mean", "grad_norm_min", "grad_norm_max", "vanishing_layers", "exploding_layers",
        "dead_fraction", "dead_units_by_layer", "saturated_fraction", "saturated_by_layer",
        "loss_cv", "overfitting_gap", "loss_gap", "has_nan",
    ):  # fmt: skip
        assert key in cnn_report.metrics, key
    assert set(cnn_report.metrics["dead_units_by_layer"]) == {"conv"}
    assert set(cnn_report.metrics["saturated_by_layer"]) == {"hidden"}


def test_report_is_strict_json(cnn_report: HealthReport) -> None:
    text = json.dumps(cnn_report.to_dict(), allow_nan=False)
    assert json.loads(text)["score"] == pytest.approx(cnn_report.score)


def test_weight_histograms_have_twenty_bins_for_weights_and_bias(cnn_report: HealthReport) -> None:
    assert set(cnn_report.weight_histograms) == {"conv", "hidden", "out"}
    conv = cnn_report.weight_histograms["conv"]
    assert len(conv["weights"]["bins"]) == HISTOGRAM_BINS + 1
    assert sum(conv["weights"]["counts"]) == 3 * 3 * 1 * 12
    assert sum(conv["bias"]["counts"]) == 12


def test_layer_without_bias_has_no_bias_histogram() -> None:
    inputs = keras.Input((10,))
    outputs = keras.layers.Dense(3, activation="softmax", use_bias=False, name="out")(inputs)
    report = analyze_health(keras.Model(inputs, outputs), *_probe(), [])
    assert report.weight_histograms["out"]["bias"] is None


def test_cnn_has_activation_maps_of_its_first_conv_layer(
    trained_cnn: Any, cnn_report: HealthReport
) -> None:
    maps = cnn_report.activation_maps
    assert [entry["image_index"] for entry in maps] == [0, 1, 2]
    assert all(entry["layer"] == "conv" for entry in maps)
    channels = np.array(maps[0]["channels"])
    assert channels.shape == (ACTIVATION_MAP_CHANNELS, 8, 8)
    assert channels.min() >= 0.0  # post-ReLU
    model, x, _, _ = trained_cnn
    expected = keras.Model(model.input, model.get_layer("conv").output)(x[:1])[0, :, :, 0]
    np.testing.assert_allclose(channels[0], np.asarray(expected), atol=1e-3)


def test_activation_map_follows_a_conv_into_its_activation_layer() -> None:
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Activation("relu", name="act")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(3, activation="softmax")(h)
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 1)).astype("float32")
    report = analyze_health(keras.Model(inputs, outputs), x, np.zeros(5, dtype=int), [])
    assert [entry["layer"] for entry in report.activation_maps] == ["act", "act", "act"]
    assert np.array(report.activation_maps[0]["channels"]).shape == (4, 6, 6)


def test_lstm_text_model_has_no_activation_maps_and_counts_as_tanh() -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((20,), dtype="int32")
    h = keras.layers.Embedding(100, 8, name="embedding")(inputs)
    h = keras.layers.LSTM(8, name="lstm")(h)
    outputs = keras.layers.Dense(2, activation="softmax", name="out")(h)
    rng = np.random.default_rng(0)
    tokens, labels = rng.integers(0, 100, (32, 20)), rng.integers(0, 2, 32)
    report = analyze_health(keras.Model(inputs, outputs), tokens, labels, _losses(0.7, 0.6))
    assert report.activation_maps == []
    assert set(report.gradient_norms) == {"embedding", "lstm", "out"}
    assert report.metrics["saturated_by_layer"] == {"lstm": 0.0}
    assert report.components["finite"] == 1.0
    json.dumps(report.to_dict(), allow_nan=False)


def test_sequential_model_is_analyzed_like_a_functional_one() -> None:
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 1)).astype("float32")
    report = analyze_health(model, x, np.zeros(5, dtype=int), [])
    assert set(report.metrics["dead_units_by_layer"]) == {"conv"}
    assert len(report.activation_maps) == 3


def test_dead_relu_layer_is_detected() -> None:
    model = _mlp(("dead", "relu"), ("alive", "relu"))
    model.get_layer("dead").kernel.assign(np.full((10, 16), 1e-6, dtype="float32"))
    model.get_layer("dead").bias.assign(np.full(16, -100.0, dtype="float32"))
    report = analyze_health(model, *_probe(), [])
    assert report.metrics["dead_units_by_layer"]["dead"] == 1.0
    assert report.metrics["dead_fraction"] >= 0.5
    assert report.components["dead_units"] <= 0.5
    assert "dead" in report.metrics["vanishing_layers"]  # no gradient flows through it


def test_model_without_relu_layers_has_nothing_dead() -> None:
    report = analyze_health(_mlp(("hidden", "tanh")), *_probe(), [])
    assert report.metrics["dead_units_by_layer"] == {}
    assert report.metrics["dead_fraction"] == 0.0
    assert report.components["dead_units"] == 1.0


def test_tanh_layer_with_huge_weights_is_saturated() -> None:
    model = _mlp(("saturated", "tanh"), ("calm", "sigmoid"))
    healthy = analyze_health(model, *_probe(), [])
    assert healthy.metrics["saturated_by_layer"]["saturated"] == 0.0
    _scale_kernel(model, "saturated", 1000.0)
    report = analyze_health(model, *_probe(), [])
    assert report.metrics["saturated_by_layer"]["saturated"] >= 0.9
    assert report.components["saturation"] < healthy.components["saturation"]


def test_nan_weights_give_finite_zero_and_score_zero_without_raising() -> None:
    model = _mlp(("hidden", "relu"))
    model.get_layer("hidden").kernel.assign(np.full((10, 16), np.nan, dtype="float32"))
    report = analyze_health(model, *_probe(), _losses(1.0, 0.9))
    assert report.components["finite"] == 0.0
    assert report.score == 0.0
    assert report.metrics["has_nan"] is True
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["gradient_norms"]["hidden"] is None
    assert data["weight_histograms"]["hidden"]["weights"]["nonfinite"] == 160


def test_nan_in_history_gives_score_zero() -> None:
    report = analyze_health(_mlp(("hidden", "relu")), *_probe(), _losses(1.0, float("nan")))
    assert report.components["finite"] == 0.0
    assert report.components["loss_stability"] == 0.0
    assert report.score == 0.0
    json.dumps(report.to_dict(), allow_nan=False)


def test_kernel_scaled_by_a_million_explodes_the_gradients_before_it() -> None:
    model = _mlp(("first", None), ("scaled", None))
    _scale_kernel(model, "scaled", 1e6)
    report = analyze_health(model, *_probe(), [])
    assert "first" in report.metrics["exploding_layers"]
    assert report.metrics["grad_norm_max"] > 1e3
    assert report.components["gradients"] < 1.0


def test_zeroed_kernel_makes_the_gradients_before_it_vanish() -> None:
    model = _mlp(("first", None), ("zeroed", None))
    _scale_kernel(model, "zeroed", 0.0)
    report = analyze_health(model, *_probe(), [])
    assert report.gradient_norms["first"] == 0.0
    assert "first" in report.metrics["vanishing_layers"]
    assert report.metrics["exploding_layers"] == []
    assert report.components["gradients"] < 1.0


def test_large_train_validation_gap_gives_low_overfitting_component() -> None:
    history = [{"loss": 0.1, "accuracy": 1.0, "val_loss": 1.5, "val_accuracy": 0.6}]
    report = analyze_health(_mlp(("hidden", "relu")), *_probe(), history)
    assert report.metrics["overfitting_gap"] == pytest.approx(0.4)
    assert report.metrics["loss_gap"] == pytest.approx(1.4)
    assert report.components["overfitting"] == 0.0
    small_gap = [{"loss": 0.3, "accuracy": 0.9, "val_loss": 0.35, "val_accuracy": 0.85}]
    report = analyze_health(_mlp(("hidden", "relu")), *_probe(), small_gap)
    assert report.components["overfitting"] == pytest.approx(0.75)


def test_monotone_loss_is_stable_and_oscillating_loss_less_so() -> None:
    model, probe = _mlp(("hidden", "relu")), _probe()
    monotone = analyze_health(model, *probe, _losses(2.0, 1.0, 0.5, 0.45, 0.44))
    oscillating = analyze_health(model, *probe, _losses(1.0, 0.6, 0.9, 0.5, 0.8, 0.4))
    rising = analyze_health(model, *probe, _losses(0.5, 0.6, 0.9))
    single = analyze_health(model, *probe, _losses(0.7))
    assert monotone.components["loss_stability"] == 1.0
    assert oscillating.components["loss_stability"] == pytest.approx(1 - 0.6 / 1.8)
    assert rising.components["loss_stability"] == 0.0
    assert single.components["loss_stability"] == 1.0


def test_analysis_does_not_change_the_model() -> None:
    inputs = keras.Input((10,))
    h = keras.layers.Dense(16, activation="relu")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.5)(h)
    outputs = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    before = [weight.numpy() for weight in model.weights]
    analyze_health(model, *_probe(n=300), [])
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_health_and_scoring_never_import_django() -> None:
    code = (
        "import sys, workers.engine.health, workers.engine.scoring;"
        "sys.exit('django' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0
