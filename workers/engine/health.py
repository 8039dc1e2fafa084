"""Model health: how well a trained Keras model is doing beyond its accuracy.

Pure ML (TensorFlow/Keras, numpy); never imports Django. ``analyze_health`` runs once per
trial, after training, on a probe batch of at most ``PROBE_SAMPLES`` samples: one forward and
backward pass (``tf.GradientTape``) through a probe model that also returns the outputs of
every ReLU/tanh/sigmoid layer. It never changes the model (``training=False``: no dropout,
no batch-norm statistics updates) and does not raise on NaN weights.

Components, each in [0, 1] (1 = healthy):

``gradients``
    L2 norm of each trainable layer's kernel gradient (``embeddings`` for an Embedding, the
    first trainable weight for layers without a kernel) under sparse categorical
    crossentropy. A layer is *vanishing* below ``VANISHING_GRAD_NORM`` (1e-7) and
    *exploding* above ``EXPLODING_GRAD_NORM`` (1e3) or when its norm is not finite.
    Component = 1 - (vanishing + exploding layers) / layers.
``dead_units``
    Over the units (Dense) or filters (Conv) of every ReLU layer (``activation="relu"``, an
    ``Activation("relu")`` or a plain ``ReLU`` layer): a unit is dead when its output is
    exactly 0 for every probe sample and position. Component = 1 - dead / units.
``saturation``
    Over the units of every tanh or sigmoid layer (recurrent layers such as LSTM count as
    tanh: their output is tanh-bounded): an activation is saturated when |a| > 0.99 (tanh)
    or a < 0.01 or a > 0.99 (sigmoid); a unit is saturated when more than 90 % of its
    activations (samples x positions) are. Component = 1 - saturated / units.
``loss_stability``
    From the training-loss curve l_1..l_n with steps d_i = l_{i+1} - l_i:
    component = 1 - sum(rises) / sum(|d_i|), the share of the curve's movement that goes
    up, where rises are the d_i > ``LOSS_NOISE_TOLERANCE`` * |l_1| (smaller rises are
    noise). A monotone decreasing curve scores 1, a steadily rising one 0, a zig-zag in
    between. Fewer than two epochs, or a flat curve: 1. Any non-finite loss: 0.
``overfitting``
    gap = final train accuracy - final validation accuracy;
    component = clip(1 - max(0, gap) / ``OVERFITTING_GAP_LIMIT`` (0.2), 0, 1). 1 when the
    gap cannot be measured (no validation accuracy).
``finite``
    0 if any NaN or infinity is in the history or the weights, else 1.

Score = weighted mean of the first five components with ``COMPONENT_WEIGHTS``; ``finite``
is a gate: when it is 0 the score is 0. A component with nothing to measure (no ReLU layer,
no tanh layer) is 1.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

PROBE_SAMPLES = 256
VANISHING_GRAD_NORM = 1e-7
EXPLODING_GRAD_NORM = 1e3
TANH_SATURATION = 0.99  # |a| above this
SIGMOID_SATURATION = (0.01, 0.99)  # a below the first or above the second
SATURATED_SHARE = 0.9  # a unit saturated on more than this share of its activations
LOSS_NOISE_TOLERANCE = 1e-3  # rises below this share of the first loss are noise
OVERFITTING_GAP_LIMIT = 0.2  # a train-val accuracy gap this large scores 0
HISTOGRAM_BINS = 20
ACTIVATION_MAP_IMAGES = 3
ACTIVATION_MAP_CHANNELS = 8
ACTIVATION_MAP_MAX_SIDE = 64  # larger maps are strided down, to keep the report small
COMPONENT_WEIGHTS: dict[str, float] = {
    "gradients": 0.25,
    "dead_units": 0.2,
    "saturation": 0.15,
    "loss_stability": 0.15,
    "overfitting": 0.25,
}
COMPONENTS: tuple[str, ...] = (*COMPONENT_WEIGHTS, "finite")

_MAIN_WEIGHT_NAMES = ("kernel", "embeddings", "depthwise_kernel")
_CONV_TYPES = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)


@dataclass
class HealthReport:
    """The outcome of ``analyze_health``; ``to_dict`` is what a ``TrialResult`` carries."""

    score: float
    components: dict[str, float]
    metrics: dict[str, Any]
    gradient_norms: dict[str, float] = field(default_factory=dict)
    weight_histograms: dict[str, dict[str, Any]] = field(default_factory=dict)
    activation_maps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: numpy numbers become Python ones, NaN and infinities become None."""
        return _json_safe(
            {
                "score": self.score,
                "components": self.components,
                "metrics": self.metrics,
                "gradient_norms": self.gradient_norms,
                "weight_histograms": self.weight_histograms,
                "activation_maps": self.activation_maps,
            }
        )


def analyze_health(
    model: keras.Model,
    x_probe: Any,
    y_probe: Any,
    history: list[dict[str, float]],
) -> HealthReport:
    """Analyze a trained ``model`` on a probe batch (first ``PROBE_SAMPLES`` of ``x_probe``,
    integer labels ``y_probe``) and its per-epoch ``history`` (dicts with loss, accuracy,
    val_loss, val_accuracy). Pure function of its inputs; does not modify the model."""
    x = _take(x_probe)
    y = _take(y_probe)
    watched = _activation_layers(model)
    map_layer = _activation_map_layer(model)
    gradient_norms, outputs = _probe_pass(model, x, y, watched, map_layer)

    metrics: dict[str, Any] = {}
    components = {
        "gradients": _gradient_component(gradient_norms, metrics),
        "dead_units": _dead_unit_component(watched, outputs, metrics),
        "saturation": _saturation_component(watched, outputs, metrics),
        "loss_stability": _loss_stability(history, metrics),
        "overfitting": _overfitting(history, metrics),
        "finite": _finite(model, history, metrics),
    }
    if components["finite"] == 0.0:
        score = 0.0
    else:
        weighted = sum(COMPONENT_WEIGHTS[name] * components[name] for name in COMPONENT_WEIGHTS)
        score = min(1.0, max(0.0, weighted / sum(COMPONENT_WEIGHTS.values())))
    maps = _activation_maps(map_layer, outputs.get(map_layer.name) if map_layer else None)
    return HealthReport(
        score=float(score),
        components={name: float(value) for name, value in components.items()},
        metrics=metrics,
        gradient_norms=gradient_norms,
        weight_histograms=_weight_histograms(model),
        activation_maps=maps,
    )


# --- the probe pass ---------------------------------------------------------------------


def _take(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: np.asarray(value)[:PROBE_SAMPLES] for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [np.asarray(value)[:PROBE_SAMPLES] for value in data]
    return np.asarray(data)[:PROBE_SAMPLES]


def _activation_kind(layer: keras.layers.Layer) -> str | None:
    """"relu", "tanh" or "sigmoid" when the layer's output passes through one, else None."""
    if isinstance(layer, keras.layers.ReLU):
        plain = not layer.negative_slope and not layer.threshold and layer.max_value is None
        return "relu" if plain else None
    if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)):
        return "tanh"  # h = o * tanh(c) and friends: bounded like a tanh
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return name if name in ("relu", "tanh", "sigmoid") else None


def _activation_layers(model: keras.Model) -> dict[str, str]:
    """Layer name -> activation kind, for the layers whose outputs are inspected."""
    return {
        layer.name: kind
        for layer in model.layers
        if (kind := _activation_kind(layer)) is not None
    }


def _activation_map_layer(model: keras.Model) -> keras.layers.Layer | None:
    """The first conv layer, or the activation right after it when it has none of its own."""
    layers = list(model.layers)
    for index, layer in enumerate(layers):
        if not isinstance(layer, _CONV_TYPES):
            continue
        if getattr(layer.activation, "__name__", "linear") != "linear":
            return layer
        shown = layer
        for following in layers[index + 1 :]:
            if not _consumes(following, shown):
                break
            if isinstance(following, keras.layers.BatchNormalization):
                shown = following
            elif isinstance(following, (keras.layers.Activation, keras.layers.ReLU)):
                return following
            else:
                break
        return layer
    return None


def _consumes(layer: keras.layers.Layer, producer: keras.layers.Layer) -> bool:
    try:
        return layer.input is producer.output
    except (AttributeError, ValueError):  # shared or unbuilt layers
        return False


def _probe_pass(
    model: keras.Model,
    x: Any,
    y: Any,
    watched: dict[str, str],
    map_layer: keras.layers.Layer | None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """One forward and backward pass: kernel-gradient norms and the watched layers' outputs.

    The probe model shares the model's layers and weights, so one pass gives both. A model
    whose graph cannot be tapped (subclassed, built without ``keras.Input``) still gets its
    gradients; the activation analysis then sees no layers.
    """
    names = list(watched)
    if map_layer is not None and map_layer.name not in watched:
        names.append(map_layer.name)
    probe = _probe_model(model, names) if names else None
    if probe is None:
        names = []
    with tf.GradientTape() as tape:
        if probe is None:
            prediction, tapped = _first_output(model(x, training=False)), []
        else:
            prediction, *tapped = probe(x, training=False)
        loss = _loss_function(prediction, y)(y, prediction)
    outputs = {name: np.asarray(output) for name, output in zip(names, tapped)}
    return _kernel_gradient_norms(model, tape, loss), outputs


def _first_output(prediction: Any) -> Any:
    """A multi-output model is judged by its first output."""
    if isinstance(prediction, dict):
        return next(iter(prediction.values()))
    return prediction[0] if isinstance(prediction, (list, tuple)) else prediction


def _kernel_gradient_norms(
    model: keras.Model, tape: tf.GradientTape, loss: Any
) -> dict[str, float]:
    tracked = [
        (layer.name, weight)
        for layer in model.layers
        if (weight := _main_weight(layer, True)) is not None
    ]
    gradients = tape.gradient(loss, [weight for _, weight in tracked])
    return {
        # An Embedding's gradient is sparse (IndexedSlices): densify before the norm.
        name: float(tf.norm(tf.convert_to_tensor(gradient)).numpy())
        for (name, _), gradient in zip(tracked, gradients)
        if gradient is not None  # a layer the loss does not depend on
    }


def _probe_model(model: keras.Model, names: list[str]) -> keras.Model | None:
    try:
        outputs = [model.outputs[0], *(model.get_layer(name).output for name in names)]
        return keras.Model(inputs=_graph_inputs(model), outputs=outputs)
    except (AttributeError, ValueError, TypeError) as error:
        logger.info("health: no probe model for %s (%s); no activations", model.name, error)
        return None


def _graph_inputs(model: keras.Model) -> Any:
    try:
        return model.input  # keeps a dict or nested structure of inputs
    except AttributeError:  # a Sequential that was never called has only ``inputs``
        return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def _loss_function(prediction: Any, y: Any) -> keras.losses.Loss:
    if prediction.shape[-1] == 1:  # a single sigmoid unit: binary labels
        return keras.losses.BinaryCrossentropy()
    if np.ndim(y) == len(prediction.shape) and np.shape(y)[-1] == prediction.shape[-1] != 1:
        return keras.losses.CategoricalCrossentropy()  # one-hot labels
    return keras.losses.SparseCategoricalCrossentropy()


def _main_weight(layer: keras.layers.Layer, trainable: bool) -> Any:
    """The weight that stands for the layer: its kernel (or embeddings), else the first."""
    weights = layer.trainable_weights if trainable else layer.weights
    for wanted in _MAIN_WEIGHT_NAMES:
        for weight in weights:
            if weight.name == wanted:
                return weight
    return weights[0] if weights else None


# --- components ---------------------------------------------------------------------------


def _gradient_component(norms: dict[str, float], metrics: dict[str, Any]) -> float:
    vanishing = [name for name, norm in norms.items() if norm < VANISHING_GRAD_NORM]
    exploding = [
        name
        for name, norm in norms.items()
        if not math.isfinite(norm) or norm > EXPLODING_GRAD_NORM
    ]
    values = np.array(list(norms.values()), dtype=np.float64)
    metrics.update(
        grad_norm_mean=float(values.mean()) if values.size else None,
        grad_norm_min=float(values.min()) if values.size else None,
        grad_norm_max=float(values.max()) if values.size else None,
        vanishing_layers=vanishing,
        exploding_layers=exploding,
    )
    if not norms:
        return 1.0
    return 1.0 - (len(vanishing) + len(exploding)) / len(norms)


def _unit_axes(output: np.ndarray) -> np.ndarray:
    """Reshape to (activations, units): units are the last axis (channels last)."""
    return output.reshape(-1, output.shape[-1]) if output.ndim > 1 else output.reshape(-1, 1)


def _dead_unit_component(
    watched: dict[str, str], outputs: dict[str, np.ndarray], metrics: dict[str, Any]
) -> float:
    by_layer: dict[str, float] = {}
    dead = units = 0
    for name, kind in watched.items():
        if kind != "relu" or name not in outputs:
            continue
        activations = _unit_axes(outputs[name])
        layer_dead = int(np.all(activations == 0, axis=0).sum())
        by_layer[name] = layer_dead / activations.shape[1]
        dead += layer_dead
        units += activations.shape[1]
    metrics.update(
        dead_fraction=dead / units if units else 0.0,
        dead_units=dead,
        relu_units=units,
        dead_units_by_layer=by_layer,
    )
    return 1.0 - dead / units if units else 1.0


def _saturation_component(
    watched: dict[str, str], outputs: dict[str, np.ndarray], metrics: dict[str, Any]
) -> float:
    by_layer: dict[str, float] = {}
    saturated_units = units = 0
    saturated_activations = activation_count = 0
    for name, kind in watched.items():
        if kind == "relu" or name not in outputs:
            continue
        activations = _unit_axes(outputs[name])
        if kind == "tanh":
            mask = np.abs(activations) > TANH_SATURATION
        else:
            low, high = SIGMOID_SATURATION
            mask = (activations < low) | (activations > high)
        layer_saturated = int((mask.mean(axis=0) > SATURATED_SHARE).sum())
        by_layer[name] = layer_saturated / activations.shape[1]
        saturated_units += layer_saturated
        units += activations.shape[1]
        saturated_activations += int(mask.sum())
        activation_count += mask.size
    metrics.update(
        saturated_fraction=saturated_units / units if units else 0.0,
        saturated_units=saturated_units,
        bounded_units=units,
        saturated_activation_share=(
            saturated_activations / activation_count if activation_count else 0.0
        ),
        saturated_by_layer=by_layer,
    )
    return 1.0 - saturated_units / units if units else 1.0


def _series(history: list[dict[str, float]], key: str) -> np.ndarray:
    values = [epoch.get(key) for epoch in history]
    return np.array([np.nan if value is None else value for value in values], dtype=np.float64)


def _loss_stability(history: list[dict[str, float]], metrics: dict[str, Any]) -> float:
    losses = _series(history, "loss")
    if not np.all(np.isfinite(losses)):
        metrics.update(loss_upward_share=None, loss_max_rise=None, loss_cv=None)
        return 0.0
    steps = np.diff(losses)
    moved = float(np.abs(steps).sum())
    rises = steps[steps > LOSS_NOISE_TOLERANCE * abs(losses[0])] if steps.size else steps
    upward_share = float(rises.sum()) / moved if moved > 0 else 0.0
    mean_step = float(np.mean(steps)) if steps.size else 0.0
    metrics.update(
        loss_upward_share=upward_share,
        loss_max_rise=float(rises.max()) if rises.size else 0.0,
        # Coefficient of variation of the epoch-to-epoch changes: reported, not scored (a
        # healthy curve that flattens out has a high one).
        loss_cv=float(np.std(steps)) / abs(mean_step) if mean_step else None,
    )
    return min(1.0, max(0.0, 1.0 - upward_share))


def _overfitting(history: list[dict[str, float]], metrics: dict[str, Any]) -> float:
    final = history[-1] if history else {}
    accuracy_gap = _difference(final.get("accuracy"), final.get("val_accuracy"))
    metrics.update(
        overfitting_gap=accuracy_gap,
        loss_gap=_difference(final.get("val_loss"), final.get("loss")),
    )
    if accuracy_gap is None or not math.isfinite(accuracy_gap):
        return 1.0
    return min(1.0, max(0.0, 1.0 - max(0.0, accuracy_gap) / OVERFITTING_GAP_LIMIT))


def _difference(first: float | None, second: float | None) -> float | None:
    if first is None or second is None:
        return None
    return float(first) - float(second)


def _finite(model: keras.Model, history: list[dict[str, float]], metrics: dict[str, Any]) -> float:
    history_nan = any(
        isinstance(value, (int, float, np.number)) and not math.isfinite(float(value))
        for epoch in history
        for value in epoch.values()
    )
    weights_nan = any(not np.all(np.isfinite(weight.numpy())) for weight in model.weights)
    metrics.update(
        has_nan=history_nan or weights_nan, nan_in_history=history_nan, nan_in_weights=weights_nan
    )
    return 0.0 if history_nan or weights_nan else 1.0


# --- pictures -------------------------------------------------------------------------------


def _histogram(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"bins": [], "counts": [], "nonfinite": int(values.size)}
    counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
    return {
        "bins": [float(f"{edge:.6g}") for edge in edges],  # drop float noise (-0.19999999999999996)
        "counts": [int(count) for count in counts],
        "nonfinite": int(values.size - finite.size),
    }


def _weight_histograms(model: keras.Model) -> dict[str, dict[str, Any]]:
    histograms: dict[str, dict[str, Any]] = {}
    for layer in model.layers:
        main = _main_weight(layer, False)
        if main is None:
            continue
        bias = next((weight for weight in layer.weights if weight.name == "bias"), None)
        histograms[layer.name] = {
            "weights": _histogram(main.numpy()),
            "bias": _histogram(bias.numpy()) if bias is not None else None,
        }
    return histograms


def _activation_maps(
    layer: keras.layers.Layer | None, output: np.ndarray | None
) -> list[dict[str, Any]]:
    """For a CNN: the first conv layer's output on the first probe images, per channel."""
    if layer is None or output is None or output.ndim != 4:
        return []
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        output = np.moveaxis(output, 1, -1)
    stride_h = max(1, math.ceil(output.shape[1] / ACTIVATION_MAP_MAX_SIDE))
    stride_w = max(1, math.ceil(output.shape[2] / ACTIVATION_MAP_MAX_SIDE))
    maps = []
    for index in range(min(ACTIVATION_MAP_IMAGES, output.shape[0])):
        image = output[index, ::stride_h, ::stride_w, :ACTIVATION_MAP_CHANNELS]
        maps.append(
            {
                "layer": layer.name,
                "image_index": index,
                "channels": [np.round(image[..., c], 3).tolist() for c in range(image.shape[-1])],
            }
        )
    return maps


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
