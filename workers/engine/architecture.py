"""A model's layers as plain JSON: what the 3D viewer draws and ``TrialResult.architecture``
carries across processes. No Django.
"""
from __future__ import annotations

import math
from typing import Any

import keras

_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_RECURRENT = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)


def extract_architecture(model: keras.Model) -> dict[str, Any]:
    """The layers of a built ``model`` in order, each with its type, shapes (batch dimension
    ``None``), size, activation and parameter count, and the totals. Only Python ints,
    strings, bools, lists and ``None``: ``json.dumps`` takes it as is.

    ``family`` is "cnn" when there is a convolution, "lstm" when there is a recurrent layer
    (wrapped or not), else "other"."""
    layers = [_describe(index, layer) for index, layer in enumerate(model.layers)]
    return {
        "layers": layers,
        "total_params": int(model.count_params()),
        "trainable_params": _weight_count(model.trainable_weights),
        "n_layers": len(layers),
        "family": _family(model.layers),
    }


def _describe(index: int, layer: keras.layers.Layer) -> dict[str, Any]:
    inner = _inner(layer)
    kernel_size = getattr(inner, "kernel_size", None)
    return {
        "index": index,
        "name": layer.name,
        "type": type(layer).__name__,
        "input_shape": _shape(layer, "input"),
        "output_shape": _shape(layer, "output"),
        "units": _int_or_none(getattr(inner, "units", None)),
        "filters": _int_or_none(getattr(inner, "filters", None)),
        "kernel_size": [int(k) for k in kernel_size] if kernel_size is not None else None,
        "activation": _activation_name(getattr(inner, "activation", None)),
        "params": int(layer.count_params()) if layer.built else 0,
        "trainable": bool(layer.trainable),
    }


def _inner(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The layer a wrapper (Bidirectional, TimeDistributed) is sized and activated by."""
    for attribute in ("forward_layer", "layer"):
        wrapped = getattr(layer, attribute, None)
        if isinstance(wrapped, keras.layers.Layer):
            return wrapped
    return layer


def _shape(layer: keras.layers.Layer, which: str) -> Any:
    """The symbolic input or output shape as a list (a list of lists for several tensors);
    ``None`` for a layer that was never called in a functional graph."""
    if isinstance(layer, keras.layers.InputLayer):
        which = "output"  # an input layer has no inbound tensor: its shape is what it emits
    try:
        tensors = getattr(layer, which)
    except (AttributeError, ValueError):
        return None
    if isinstance(tensors, (list, tuple)):
        if not tensors:
            return None
        return [_plain_shape(tensor.shape) for tensor in tensors]
    return _plain_shape(tensors.shape)


def _plain_shape(shape: Any) -> list[int | None]:
    return [None if dim is None else int(dim) for dim in shape]


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int) or hasattr(value, "__index__") else None


def _activation_name(activation: Any) -> str | None:
    if activation is None:
        return None
    if isinstance(activation, str):
        return activation
    return str(getattr(activation, "__name__", type(activation).__name__))


def _weight_count(weights: list[Any]) -> int:
    return int(sum(math.prod(int(dim) for dim in weight.shape) for weight in weights))


def _family(layers: list[keras.layers.Layer]) -> str:
    inners = [_inner(layer) for layer in layers]
    if any(isinstance(layer, _CONV) for layer in inners):
        return "cnn"
    if any(isinstance(layer, _RECURRENT) for layer in inners):
        return "lstm"
    return "other"
