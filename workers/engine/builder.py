"""Keras models from a parameter dict (see ``search_space``): a CNN for image data sets, an
LSTM for text. No Django.

``build_model`` creates every variable where it is called, so a caller that wants the model
on several GPUs opens ``tf.distribute.MirroredStrategy().scope()`` around the call; the
optimizer is created and the model compiled inside the same call for the same reason.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from workers.engine.catalog import IMAGE, TEXT

CNN_PARAMS = (
    "conv_blocks", "filters", "kernel_size", "activation", "pooling", "batch_norm",
    "dropout", "dense_layers", "dense_units", "optimizer", "learning_rate",
)
LSTM_PARAMS = (
    "embedding_dim", "lstm_layers", "lstm_units", "bidirectional", "dropout",
    "dense_layers", "dense_units", "optimizer", "learning_rate",
)

OPTIMIZERS: dict[str, Callable[..., keras.optimizers.Optimizer]] = {
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
    "nadam": keras.optimizers.Nadam,
}
POOLING: dict[str, type[keras.layers.Layer] | None] = {
    "max": keras.layers.MaxPooling2D,
    "avg": keras.layers.AveragePooling2D,
    "none": None,
}


def build_model(
    kind: str,
    params: dict[str, Any],
    *,
    input_shape: tuple[int, ...],
    n_classes: int,
    vocab_size: int | None = None,
) -> keras.Model:
    """A compiled model for ``kind`` ("image" or "text"). ``params`` may hold more keys than
    the model needs (``batch_size``, ``epochs``); a missing one is a ``ValueError`` naming
    it. Images come as ``(height, width, channels)``; text as ``(sequence_length,)`` of
    token ids below ``vocab_size``."""
    if kind == IMAGE:
        _require(kind, params, CNN_PARAMS)
        model = _build_cnn(params, input_shape=input_shape, n_classes=n_classes)
    elif kind == TEXT:
        _require(kind, params, LSTM_PARAMS)
        if not vocab_size or vocab_size < 1:
            raise ValueError(f"text models need a positive vocab_size, got {vocab_size!r}")
        model = _build_lstm(
            params, input_shape=input_shape, n_classes=n_classes, vocab_size=vocab_size
        )
    else:
        raise ValueError(f"unknown model kind {kind!r}; known: {IMAGE}, {TEXT}")
    # By keyword: compile's third positional parameter is loss_weights, not metrics.
    model.compile(
        optimizer=_optimizer(params),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _require(kind: str, params: dict[str, Any], names: tuple[str, ...]) -> None:
    missing = [name for name in names if name not in params]
    if missing:
        raise ValueError(f"{kind} model params are missing: {', '.join(missing)}")


def _optimizer(params: dict[str, Any]) -> keras.optimizers.Optimizer:
    name = params["optimizer"]
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](learning_rate=float(params["learning_rate"]))


def _build_cnn(
    params: dict[str, Any], *, input_shape: tuple[int, ...], n_classes: int
) -> keras.Model:
    if len(input_shape) != 3:
        raise ValueError(f"image input_shape must be (height, width, channels), got {input_shape}")
    if params["pooling"] not in POOLING:
        raise ValueError(f"unknown pooling {params['pooling']!r}; known: {', '.join(POOLING)}")
    pooling = POOLING[params["pooling"]]
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    for i in range(int(params["conv_blocks"])):
        n = i + 1
        x = keras.layers.Conv2D(
            int(params["filters"]) * 2**i, int(params["kernel_size"]), padding="same",
            activation=None, name=f"conv_{n}",
        )(x)
        if params["batch_norm"]:
            # momentum 0.9, not Keras' 0.99: trials train for a few hundred steps, and slow
            # moving statistics would leave validation far from training.
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn_{n}")(x)
        x = keras.layers.Activation(params["activation"], name=f"act_{n}")(x)
        # Small images (digits are 8x8) run out of pixels before the blocks run out.
        if pooling is not None and x.shape[1] >= 2 and x.shape[2] >= 2:
            x = pooling(pool_size=2, name=f"pool_{n}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = _head(x, params, n_classes=n_classes)
    return keras.Model(inputs, outputs, name="cnn")


def _build_lstm(
    params: dict[str, Any], *, input_shape: tuple[int, ...], n_classes: int, vocab_size: int
) -> keras.Model:
    if len(input_shape) != 1:
        raise ValueError(f"text input_shape must be (sequence_length,), got {input_shape}")
    inputs = keras.Input(shape=input_shape, name="input", dtype="int32")
    x = keras.layers.Embedding(vocab_size, int(params["embedding_dim"]), name="embedding")(inputs)
    layers = int(params["lstm_layers"])
    for i in range(layers):
        n = i + 1
        lstm = keras.layers.LSTM(
            int(params["lstm_units"]), return_sequences=n < layers, name=f"lstm_{n}"
        )
        if params["bidirectional"]:
            x = keras.layers.Bidirectional(lstm, name=f"bidirectional_{n}")(x)
        else:
            x = lstm(x)
    outputs = _head(x, params, n_classes=n_classes)
    return keras.Model(inputs, outputs, name="lstm")


def _head(x: Any, params: dict[str, Any], *, n_classes: int) -> Any:
    """Dropout, the hidden dense layers and the softmax output, shared by both families."""
    x = keras.layers.Dropout(float(params["dropout"]), name="dropout")(x)
    activation = params.get("activation", "relu")  # the LSTM space has no activation
    for i in range(int(params["dense_layers"])):
        x = keras.layers.Dense(
            int(params["dense_units"]), activation=activation, name=f"dense_{i + 1}"
        )(x)
    return keras.layers.Dense(n_classes, activation="softmax", name="output")(x)
