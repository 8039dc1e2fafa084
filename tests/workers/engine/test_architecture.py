from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import pytest

from workers.engine.architecture import extract_architecture
from workers.engine.builder import build_model

CNN = {
    "conv_blocks": 3, "filters": 8, "kernel_size": 5, "activation": "elu", "pooling": "max",
    "batch_norm": True, "dropout": 0.2, "dense_layers": 2, "dense_units": 32,
    "optimizer": "adam", "learning_rate": 0.001,
}
LSTM = {
    "embedding_dim": 16, "lstm_layers": 2, "lstm_units": 8, "bidirectional": True,
    "dropout": 0.1, "dense_layers": 1, "dense_units": 16, "optimizer": "adam",
    "learning_rate": 0.001,
}
KEYS = {"index", "name", "type", "input_shape", "output_shape", "units", "filters",
        "kernel_size", "activation", "params", "trainable"}


@pytest.fixture(scope="module")
def cnn() -> keras.Model:
    return build_model("image", CNN, input_shape=(8, 8, 1), n_classes=10)


@pytest.fixture(scope="module")
def lstm() -> keras.Model:
    return build_model("text", LSTM, input_shape=(12,), n_classes=4, vocab_size=100)


def _by_name(architecture: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {layer["name"]: layer for layer in architecture["layers"]}


@pytest.mark.parametrize("model_name", ["cnn", "lstm"])
def test_layer_list_matches_the_model(model_name: str, request: Any) -> None:
    model = request.getfixturevalue(model_name)
    architecture = extract_architecture(model)
    layers = architecture["layers"]
    assert [layer["name"] for layer in layers] == [layer.name for layer in model.layers]
    assert [layer["type"] for layer in layers] == [type(l).__name__ for l in model.layers]
    assert [layer["index"] for layer in layers] == list(range(len(model.layers)))
    assert architecture["n_layers"] == len(model.layers)
    assert all(set(layer) == KEYS for layer in layers)
    assert layers[0]["type"] == "InputLayer" and layers[0]["params"] == 0
    assert layers[-1]["output_shape"] == [None, model.output_shape[-1]]


@pytest.mark.parametrize("model_name", ["cnn", "lstm"])
def test_param_counts_add_up(model_name: str, request: Any) -> None:
    model = request.getfixturevalue(model_name)
    architecture = extract_architecture(model)
    assert sum(layer["params"] for layer in architecture["layers"]) == model.count_params()
    assert architecture["total_params"] == model.count_params()
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    assert architecture["trainable_params"] == trainable


@pytest.mark.parametrize("model_name", ["cnn", "lstm"])
def test_output_is_plain_json(model_name: str, request: Any) -> None:
    architecture = extract_architecture(request.getfixturevalue(model_name))
    assert json.loads(json.dumps(architecture, allow_nan=False)) == architecture


def test_cnn_layers_report_filters_kernels_units_and_activations(cnn: keras.Model) -> None:
    architecture = extract_architecture(cnn)
    assert architecture["family"] == "cnn"
    layers = _by_name(architecture)
    assert layers["input"]["input_shape"] == layers["input"]["output_shape"] == [None, 8, 8, 1]
    for i, filters in enumerate([8, 16, 32], start=1):
        conv = layers[f"conv_{i}"]
        assert (conv["type"], conv["filters"], conv["kernel_size"]) == ("Conv2D", filters, [5, 5])
        assert conv["units"] is None and conv["activation"] == "linear"
        assert layers[f"act_{i}"]["activation"] == "elu"
        assert layers[f"bn_{i}"]["type"] == "BatchNormalization"
    assert layers["conv_1"]["params"] == 5 * 5 * 1 * 8 + 8
    assert layers["pool_1"]["input_shape"] == [None, 8, 8, 8]
    assert layers["pool_1"]["output_shape"] == [None, 4, 4, 8]
    assert layers["flatten"]["output_shape"] == [None, 32]
    assert [layers[n]["units"] for n in ("dense_1", "dense_2", "output")] == [32, 32, 10]
    assert layers["dense_1"]["activation"] == "elu"
    assert layers["output"]["activation"] == "softmax"
    assert layers["dropout"]["units"] is None and layers["dropout"]["activation"] is None
    # Batch norm's moving statistics count as parameters but are not trained.
    assert architecture["trainable_params"] == architecture["total_params"] - 2 * (8 + 16 + 32)


def test_lstm_layers_report_the_wrapped_recurrent_layer(lstm: keras.Model) -> None:
    architecture = extract_architecture(lstm)
    assert architecture["family"] == "lstm"
    layers = _by_name(architecture)
    assert layers["embedding"]["output_shape"] == [None, 12, 16]
    first, second = layers["bidirectional_1"], layers["bidirectional_2"]
    assert first["type"] == second["type"] == "Bidirectional"
    assert (first["units"], first["activation"]) == (8, "tanh")
    assert first["output_shape"] == [None, 12, 16]  # both directions, every step
    assert second["output_shape"] == [None, 16]
    # Two LSTMs of 8 units over 16 inputs: 4 gates x (inputs + units + bias) x units.
    assert first["params"] == 2 * 4 * (16 + 8 + 1) * 8


def test_plain_lstm_and_other_families() -> None:
    plain = build_model("text", {**LSTM, "bidirectional": False, "lstm_layers": 1},
                        input_shape=(6,), n_classes=2, vocab_size=20)
    layers = _by_name(extract_architecture(plain))
    assert layers["lstm_1"]["type"] == "LSTM" and layers["lstm_1"]["units"] == 8
    assert extract_architecture(plain)["family"] == "lstm"

    dense = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(2, name="d")])
    architecture = extract_architecture(dense)
    assert architecture["family"] == "other"
    assert architecture["layers"][0]["input_shape"] == [None, 3]
    assert architecture["total_params"] == 8


def test_frozen_layers_are_reported_as_not_trainable() -> None:
    model = build_model("image", {**CNN, "conv_blocks": 1}, input_shape=(8, 8, 1), n_classes=2)
    model.get_layer("conv_1").trainable = False
    architecture = extract_architecture(model)
    assert _by_name(architecture)["conv_1"]["trainable"] is False
    assert architecture["trainable_params"] == (
        architecture["total_params"] - _by_name(architecture)["conv_1"]["params"] - 2 * 8
    )


def test_engine_modules_do_not_import_django() -> None:
    # The RunPod image carries the engine without Django.
    code = (
        "import sys\n"
        "import workers.engine.builder, workers.engine.architecture, "
        "workers.engine.search_space\n"
        "sys.exit(1 if any(m.split('.')[0] == 'django' for m in sys.modules) else 0)\n"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
