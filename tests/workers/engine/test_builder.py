from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from workers.engine.builder import CNN_PARAMS, LSTM_PARAMS, build_model

REPO_ROOT = Path(__file__).resolve().parents[3]

CNN = {
    "conv_blocks": 2, "filters": 8, "kernel_size": 3, "activation": "relu", "pooling": "max",
    "batch_norm": True, "dropout": 0.2, "dense_layers": 1, "dense_units": 16,
    "optimizer": "adam", "learning_rate": 0.001, "batch_size": 16, "epochs": 1,
}
LSTM = {
    "embedding_dim": 8, "lstm_layers": 1, "lstm_units": 8, "bidirectional": False,
    "dropout": 0.1, "dense_layers": 0, "dense_units": 16, "optimizer": "adam",
    "learning_rate": 0.001, "batch_size": 16, "epochs": 1,
}
DIGITS_SHAPE = (8, 8, 1)
SEQUENCE_LENGTH = 12
VOCAB = 50


def _fit_one_epoch(model: keras.Model, x: np.ndarray, n_classes: int) -> dict[str, Any]:
    y = np.random.default_rng(0).integers(0, n_classes, size=len(x))
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return history.history


def _images(n: int = 16, shape: tuple[int, ...] = DIGITS_SHAPE) -> np.ndarray:
    return np.random.default_rng(1).random((n, *shape), dtype=np.float32)


def _tokens(n: int = 16) -> np.ndarray:
    return np.random.default_rng(2).integers(0, VOCAB, size=(n, SEQUENCE_LENGTH))


def _names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers]


@pytest.mark.parametrize(
    "overrides",
    [
        # Three blocks of pooling on 8x8: 8 -> 4 -> 2 -> 1, never below one pixel.
        {"conv_blocks": 3, "pooling": "max", "batch_norm": True, "dense_layers": 2,
         "optimizer": "adam"},
        {"conv_blocks": 3, "pooling": "avg", "batch_norm": False, "dense_layers": 0,
         "optimizer": "rmsprop", "activation": "elu", "kernel_size": 5},
        {"conv_blocks": 1, "pooling": "none", "batch_norm": False, "dense_layers": 2,
         "optimizer": "sgd", "activation": "tanh"},
        {"conv_blocks": 2, "pooling": "max", "batch_norm": True, "dense_layers": 0,
         "optimizer": "nadam", "activation": "selu", "dropout": 0.0},
    ],
)
def test_cnn_options_build_and_train(overrides: dict[str, Any]) -> None:
    keras.utils.set_random_seed(0)
    params = {**CNN, **overrides}
    model = build_model("image", params, input_shape=DIGITS_SHAPE, n_classes=10)

    assert model.output_shape == (None, 10)
    names = _names(model)
    blocks = params["conv_blocks"]
    assert [n for n in names if n.startswith("conv_")] == [f"conv_{i + 1}" for i in range(blocks)]
    assert [n for n in names if n.startswith("act_")] == [f"act_{i + 1}" for i in range(blocks)]
    assert sum(n.startswith("bn_") for n in names) == (blocks if params["batch_norm"] else 0)
    pools = [layer for layer in model.layers if layer.name.startswith("pool_")]
    assert len(pools) == (0 if params["pooling"] == "none" else blocks)
    head = ["flatten", "dropout", *(f"dense_{i + 1}" for i in range(params["dense_layers"])),
            "output"]
    assert names[-len(head):] == head
    filters = [model.get_layer(f"conv_{i + 1}").filters for i in range(blocks)]
    assert filters == [params["filters"] * 2**i for i in range(blocks)]
    assert model.get_layer("conv_1").kernel_size == (params["kernel_size"],) * 2
    assert model.get_layer("output").activation.__name__ == "softmax"

    optimizer = model.optimizer
    assert type(optimizer).__name__.lower() == params["optimizer"]
    assert float(optimizer.learning_rate) == pytest.approx(params["learning_rate"])
    assert model.loss == "sparse_categorical_crossentropy"

    history = _fit_one_epoch(model, _images(), 10)
    assert set(history) == {"loss", "accuracy"}
    assert np.isfinite(history["loss"][0])


def test_pooling_stops_when_the_image_is_one_pixel_wide() -> None:
    # 4x8 input: the third block would pool a 1x2 map, so it is skipped.
    model = build_model("image", {**CNN, "conv_blocks": 3, "batch_norm": False},
                        input_shape=(4, 8, 1), n_classes=3)
    assert [layer.name for layer in model.layers if layer.name.startswith("pool_")] == [
        "pool_1", "pool_2"]
    assert model.get_layer("act_3").output.shape == (None, 1, 2, 32)
    assert model.output_shape == (None, 3)


def test_pooling_kind_matches_the_param() -> None:
    avg = build_model("image", {**CNN, "pooling": "avg"}, input_shape=DIGITS_SHAPE, n_classes=2)
    assert isinstance(avg.get_layer("pool_1"), keras.layers.AveragePooling2D)
    top = build_model("image", {**CNN, "pooling": "max"}, input_shape=DIGITS_SHAPE, n_classes=2)
    assert isinstance(top.get_layer("pool_1"), keras.layers.MaxPooling2D)


@pytest.mark.parametrize(
    "overrides",
    [
        {"lstm_layers": 2, "bidirectional": True, "dense_layers": 1, "optimizer": "nadam"},
        {"lstm_layers": 1, "bidirectional": False, "dense_layers": 0, "optimizer": "sgd"},
    ],
)
def test_lstm_options_build_and_train(overrides: dict[str, Any]) -> None:
    keras.utils.set_random_seed(0)
    params = {**LSTM, **overrides}
    model = build_model("text", params, input_shape=(SEQUENCE_LENGTH,), n_classes=3,
                        vocab_size=VOCAB)

    assert model.output_shape == (None, 3)
    assert model.get_layer("embedding").input_dim == VOCAB
    assert model.get_layer("embedding").output_dim == params["embedding_dim"]
    layers = params["lstm_layers"]
    if params["bidirectional"]:
        wrappers = [model.get_layer(f"bidirectional_{i + 1}") for i in range(layers)]
        assert all(isinstance(w, keras.layers.Bidirectional) for w in wrappers)
        assert [w.forward_layer.return_sequences for w in wrappers] == [True, False]
        assert wrappers[-1].output.shape == (None, 2 * params["lstm_units"])
    else:
        lstm = model.get_layer("lstm_1")
        assert isinstance(lstm, keras.layers.LSTM) and lstm.units == params["lstm_units"]
        assert lstm.return_sequences is False
    assert sum(layer.name.startswith("dense_") for layer in model.layers) == params["dense_layers"]
    assert type(model.optimizer).__name__.lower() == params["optimizer"]

    history = _fit_one_epoch(model, _tokens(), 3)
    assert np.isfinite(history["loss"][0])


def test_build_inside_a_mirrored_strategy_scope() -> None:
    strategy = tf.distribute.MirroredStrategy()
    with strategy.scope():
        model = build_model("image", CNN, input_shape=DIGITS_SHAPE, n_classes=10)
    assert all(strategy.extended.variable_created_in_scope(w.value) for w in model.weights)
    history = _fit_one_epoch(model, _images(), 10)
    assert np.isfinite(history["loss"][0])


def test_mirrored_strategy_over_two_replicas_trains() -> None:
    # Logical devices must be set before TensorFlow starts, so this runs in its own process.
    code = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from workers.engine.builder import build_model
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        with strategy.scope():
            model = build_model("text", {LSTM!r}, input_shape=({SEQUENCE_LENGTH},),
                                n_classes=2, vocab_size={VOCAB})
        x = np.random.default_rng(0).integers(0, {VOCAB}, size=(16, {SEQUENCE_LENGTH}))
        y = np.random.default_rng(1).integers(0, 2, size=16)
        loss = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history["loss"][0]
        assert np.isfinite(loss), loss
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


@pytest.mark.parametrize(("kind", "base", "names"), [("image", CNN, CNN_PARAMS),
                                                     ("text", LSTM, LSTM_PARAMS)])
def test_missing_params_are_named(kind: str, base: dict[str, Any], names: tuple[str, ...]) -> None:
    params = {k: v for k, v in base.items() if k not in (names[0], "learning_rate")}
    with pytest.raises(ValueError) as caught:
        build_model(kind, params, input_shape=DIGITS_SHAPE, n_classes=2, vocab_size=VOCAB)
    assert str(caught.value) == f"{kind} model params are missing: {names[0]}, learning_rate"


def test_training_only_params_are_not_required() -> None:
    params = {k: v for k, v in CNN.items() if k not in ("batch_size", "epochs")}
    assert build_model("image", params, input_shape=DIGITS_SHAPE, n_classes=2)


@pytest.mark.parametrize(
    ("kind", "params", "kwargs", "message"),
    [
        ("audio", CNN, {}, "unknown model kind 'audio'; known: image, text"),
        ("image", {**CNN, "optimizer": "lion"}, {},
         "unknown optimizer 'lion'; known: adam, rmsprop, sgd, nadam"),
        ("image", {**CNN, "pooling": "min"}, {}, "unknown pooling 'min'; known: max, avg, none"),
        ("image", CNN, {"input_shape": (8, 8)}, "image input_shape must be (height, width, "),
        ("text", LSTM, {"vocab_size": None}, "text models need a positive vocab_size"),
        ("text", LSTM, {"input_shape": (4, 4), "vocab_size": VOCAB},
         "text input_shape must be (sequence_length,)"),
    ],
)
def test_bad_kind_or_values_are_refused(
    kind: str, params: dict[str, Any], kwargs: dict[str, Any], message: str
) -> None:
    arguments = {"input_shape": DIGITS_SHAPE, "n_classes": 2, **kwargs}
    with pytest.raises(ValueError) as caught:
        build_model(kind, params, **arguments)
    assert message in str(caught.value)
