from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from workers.engine.search_space import (
    default_params,
    CNN_SPACE,
    LSTM_SPACE,
    ParamSpec,
    SearchSpaceError,
    describe_space,
    effective_space,
    parse_cli_override,
    space_for,
    suggest_params,
    validate_overrides,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(seed: int = 7) -> optuna.Study:
    return optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed))


def _within(spec: ParamSpec, value: Any) -> bool:
    if spec.choices is not None:
        return any(type(c) is type(value) and c == value for c in spec.choices)
    assert spec.low is not None and spec.high is not None
    if spec.kind == "int" and type(value) is not int:
        return False
    if spec.step and (value - spec.low) % spec.step:
        return False
    return spec.low <= value <= spec.high


def test_importing_search_space_does_not_load_tensorflow() -> None:
    code = (
        "import sys, workers.engine.search_space\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'django'))\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_is_the_cnn_space_and_text_the_lstm_space() -> None:
    assert space_for("image", max_epochs=10).keys() == CNN_SPACE.keys()
    assert space_for("text", max_epochs=10).keys() == LSTM_SPACE.keys()
    assert "conv_blocks" in CNN_SPACE and "lstm_units" in LSTM_SPACE


@pytest.mark.parametrize(("max_epochs", "low"), [(1, 1), (2, 1), (3, 2), (10, 5), (11, 6)])
def test_epochs_range_runs_from_half_of_max_epochs_to_max_epochs(max_epochs: int, low: int) -> None:
    epochs = space_for("image", max_epochs=max_epochs)["epochs"]
    assert (epochs.kind, epochs.low, epochs.high) == ("int", low, max_epochs)


def test_space_for_does_not_share_the_module_table() -> None:
    space = space_for("image", max_epochs=4)
    space.pop("filters")
    assert "filters" in CNN_SPACE


@pytest.mark.parametrize("kind", ["image", "text"])
def test_suggested_params_stay_within_bounds(kind: str) -> None:
    space = space_for(kind, max_epochs=6)
    study = _study()
    for _ in range(40):
        trial = study.ask()
        params = suggest_params(trial, kind, max_epochs=6)
        assert params.keys() == space.keys()
        assert trial.params == params
        for name, value in params.items():
            assert _within(space[name], value), (name, value)
        study.tell(trial, 0.5)


def test_suggest_params_works_with_a_fixed_trial() -> None:
    # Re-running a chosen configuration outside a study goes through the same code.
    params = {"conv_blocks": 2, "filters": 32, "kernel_size": 3, "activation": "elu",
              "pooling": "max", "batch_norm": False, "dropout": 0.25, "dense_layers": 1,
              "dense_units": 64, "optimizer": "sgd", "learning_rate": 0.005,
              "batch_size": 32, "epochs": 3}
    assert suggest_params(optuna.trial.FixedTrial(params), "image", max_epochs=4) == params


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [
        ("image", {"filters": 32, "batch_norm": False, "pooling": "none", "dropout": 0.25,
                   "conv_blocks": 3, "learning_rate": 0.003, "dense_units": 96, "epochs": 4}),
        ("text", {"bidirectional": True, "lstm_units": 48, "optimizer": "rmsprop",
                  "batch_size": 128, "dropout": 0.0}),
    ],
)
def test_fixed_overrides_appear_in_trial_params_unchanged(
    kind: str, overrides: dict[str, Any]
) -> None:
    study = _study()
    for _ in range(5):
        trial = study.ask()
        params = suggest_params(trial, kind, overrides, max_epochs=5)
        for name, value in overrides.items():
            assert params[name] == value and type(params[name]) is type(value)
            assert trial.params[name] == value and type(trial.params[name]) is type(value)
        study.tell(trial, 0.1)


def test_fixed_float_given_as_an_int_is_a_float() -> None:
    assert validate_overrides("image", {"dropout": 0}, max_epochs=3) == {"dropout": 0.0}
    assert type(validate_overrides("image", {"dropout": 0}, max_epochs=3)["dropout"]) is float


def test_narrowed_ranges_and_choices_are_respected_over_many_trials() -> None:
    overrides = {
        "learning_rate": {"low": 0.001, "high": 0.002},
        "dense_units": {"low": 64, "high": 128},
        "conv_blocks": {"high": 2},
        "optimizer": {"choices": ["nadam", "sgd"]},
        "batch_size": {"choices": [16, 64]},
    }
    study = _study(seed=3)
    seen: dict[str, set[Any]] = {"optimizer": set(), "batch_size": set(), "dense_units": set()}
    for _ in range(60):
        trial = study.ask()
        params = suggest_params(trial, "image", overrides, max_epochs=4)
        assert 0.001 <= params["learning_rate"] <= 0.002
        assert params["dense_units"] in (64, 96, 128)
        assert params["conv_blocks"] in (1, 2)
        for name in seen:
            seen[name].add(params[name])
        study.tell(trial, params["learning_rate"])
    assert seen == {"optimizer": {"nadam", "sgd"}, "batch_size": {16, 64},
                    "dense_units": {64, 96, 128}}


def test_validate_overrides_normalizes_ranges_and_choices() -> None:
    normalized = validate_overrides(
        "image",
        {"learning_rate": {"low": 0.001}, "conv_blocks": {"high": 2},
         "optimizer": {"choices": ["sgd", "adam", "sgd"]}, "batch_norm": True},
        max_epochs=10,
    )
    assert normalized == {
        "learning_rate": {"low": 0.001, "high": 0.01},
        "conv_blocks": {"low": 1, "high": 2},
        "optimizer": {"choices": ["adam", "sgd"]},
        "batch_norm": True,
    }
    assert json.loads(json.dumps(normalized)) == normalized
    assert validate_overrides("text", None, max_epochs=10) == {}


def test_effective_space_is_the_narrowed_space() -> None:
    space = effective_space("text", {"lstm_units": 32, "optimizer": {"choices": ["adam"]}},
                            max_epochs=2)
    assert (space["lstm_units"].low, space["lstm_units"].high) == (32, 32)
    assert space["optimizer"].choices == ("adam",)
    assert space["embedding_dim"] == LSTM_SPACE["embedding_dim"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learning_rate": 0.5}, "learning_rate: 0.5 is outside 0.0001..0.01"),
        ({"conv_blocks": 4}, "conv_blocks: 4 is outside 1..3"),
        ({"conv_blocks": 2.0}, "conv_blocks: expected an integer, got 2.0"),
        ({"conv_blocks": True}, "conv_blocks: expected an integer, got True"),
        ({"dense_units": 50}, "dense_units: 50 is not on the grid 32..256 (step 32)"),
        ({"dense_units": 288}, "dense_units: 288 is outside 32..256 (step 32)"),
        ({"dropout": "0.2"}, "dropout: expected a number, got '0.2'"),
        ({"dropout": float("nan")}, "dropout: nan is not a finite number"),
        ({"batch_norm": 1}, "batch_norm: 1 is not one of true, false"),
        ({"batch_norm": "true"}, "batch_norm: 'true' is not one of true, false"),
        ({"filters": 24}, "filters: 24 is not one of 16, 32, 64, 128"),
        ({"activation": "gelu"}, "activation: 'gelu' is not one of relu, elu, tanh, selu"),
        ({"epochs": 2}, "epochs: 2 is outside 5..10"),
        ({"dropout": {"low": 0.4, "high": 0.1}},
         "dropout: empty range 0.4..0.1 (low > high); allowed 0..0.5"),
        ({"learning_rate": {"low": 1e-5}}, "learning_rate: 1e-05 is outside 0.0001..0.01"),
        ({"learning_rate": {"low": 0.001, "step": 2}}, "learning_rate: narrow a range with"),
        ({"learning_rate": {}}, "learning_rate: narrow a range with"),
        ({"optimizer": {"low": 1}}, "optimizer: narrow a categorical with"),
        ({"optimizer": {"choices": []}},
         "optimizer: choices must be a non-empty list from adam, rmsprop, sgd, nadam"),
        ({"optimizer": {"choices": "adam"}}, "optimizer: choices must be a non-empty list"),
        ({"optimizer": {"choices": ["adam", "lion"]}}, "optimizer: 'lion' is not one of"),
    ],
)
def test_invalid_overrides_name_the_parameter_and_what_is_allowed(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(SearchSpaceError) as caught:
        validate_overrides("image", overrides, max_epochs=10)
    assert message in str(caught.value)


def test_unknown_parameter_lists_the_allowed_names() -> None:
    with pytest.raises(SearchSpaceError) as caught:
        validate_overrides("text", {"filters": 32}, max_epochs=10)
    message = str(caught.value)
    assert "unknown parameter 'filters' for text models" in message
    assert "allowed: embedding_dim, lstm_layers, lstm_units, bidirectional" in message


def test_suggest_params_rejects_bad_overrides_before_sampling() -> None:
    study = _study()
    trial = study.ask()
    with pytest.raises(SearchSpaceError, match="learning_rate: 0.5 is outside"):
        suggest_params(trial, "image", {"learning_rate": 0.5}, max_epochs=3)
    assert trial.params == {}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: space_for("audio", max_epochs=3),
         "unknown model kind 'audio'; known: image, text"),
        (lambda: space_for("image", max_epochs=0), "max_epochs must be a positive integer"),
        (lambda: validate_overrides("image", [("filters", 32)], max_epochs=3),
         "overrides must be a mapping"),
    ],
)
def test_bad_kind_max_epochs_or_overrides_type_are_refused(call: Any, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        call()


def test_search_space_error_is_a_value_error() -> None:
    assert issubclass(SearchSpaceError, ValueError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("filters=32", ("filters", 32)),
        (" conv_blocks = 2 ", ("conv_blocks", 2)),
        ("batch_norm=true", ("batch_norm", True)),
        ("batch_norm=FALSE", ("batch_norm", False)),
        ("dropout=0", ("dropout", 0.0)),
        ("learning_rate=1e-3", ("learning_rate", 0.001)),
        ("learning_rate=0.001..0.005", ("learning_rate", {"low": 0.001, "high": 0.005})),
        ("dense_units=64..128", ("dense_units", {"low": 64, "high": 128})),
        ("optimizer=nadam", ("optimizer", "nadam")),
        ("optimizer=sgd,adam", ("optimizer", {"choices": ["adam", "sgd"]})),
        ("batch_size=64", ("batch_size", 64)),
        ("epochs=3", ("epochs", 3)),
    ],
)
def test_parse_cli_override_converts_to_the_parameter_type(
    text: str, expected: tuple[str, Any]
) -> None:
    name, value = parse_cli_override("image", text, max_epochs=4)
    assert (name, value) == expected
    assert type(value) is type(expected[1])


def test_parse_cli_override_for_text_models() -> None:
    assert parse_cli_override("text", "bidirectional=true", max_epochs=2) == (
        "bidirectional", True)
    assert parse_cli_override("text", "lstm_units=64", max_epochs=2) == ("lstm_units", 64)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("filters", "expected name=value, got 'filters'"),
        ("=32", "expected name=value"),
        ("filters=", "expected name=value"),
        ("colour=red", "unknown parameter 'colour' for image models; allowed: conv_blocks"),
        ("conv_blocks=two", "conv_blocks: 'two' is not an integer"),
        ("conv_blocks=2.5", "conv_blocks: '2.5' is not an integer"),
        ("dropout=lots", "dropout: 'lots' is not a number"),
        ("batch_norm=yes", "batch_norm: 'yes' is not one of true, false"),
        ("filters=33", "filters: '33' is not one of 16, 32, 64, 128"),
        ("optimizer=adam,lion", "optimizer: 'lion' is not one of adam, rmsprop, sgd, nadam"),
        ("learning_rate=0.5", "learning_rate: 0.5 is outside 0.0001..0.01"),
        ("dropout=0.4..0.1", "dropout: empty range 0.4..0.1"),
        ("epochs=9", "epochs: 9 is outside 2..4"),
    ],
)
def test_parse_cli_override_errors_clearly(text: str, message: str) -> None:
    with pytest.raises(SearchSpaceError) as caught:
        parse_cli_override("image", text, max_epochs=4)
    assert message in str(caught.value)


@pytest.mark.parametrize("kind", ["image", "text"])
def test_describe_space_lists_every_parameter_json_safe(kind: str) -> None:
    rows = describe_space(kind, max_epochs=8)
    assert [row["name"] for row in rows] == list(space_for(kind, max_epochs=8))
    assert all(row["help"] for row in rows)
    assert json.loads(json.dumps(rows)) == rows
    by_name = {row["name"]: row for row in rows}
    assert by_name["learning_rate"] == {
        "name": "learning_rate", "kind": "float", "low": 0.0001, "high": 0.01, "log": True,
        "step": None, "choices": None, "help": by_name["learning_rate"]["help"], "default": 0.002,
    }
    assert by_name["epochs"]["low"] == 4 and by_name["epochs"]["high"] == 8
    assert by_name["optimizer"]["choices"] == ["adam", "rmsprop", "sgd", "nadam"]


@pytest.mark.parametrize("kind", ["image", "text"])
def test_default_params_lie_in_the_space_and_follow_overrides(kind: str) -> None:
    defaults = default_params(kind, max_epochs=6)
    space = space_for(kind, max_epochs=6)
    assert set(defaults) == set(space)
    for name, value in defaults.items():
        assert space[name].check_value(value) == value
    assert defaults["epochs"] == 6 and defaults["optimizer"] == "adam"
    narrowed = default_params(
        kind, {"optimizer": "sgd", "learning_rate": {"low": 0.005, "high": 0.01}, "dense_units": {"low": 96, "high": 128}},
        max_epochs=6,
    )
    assert narrowed["optimizer"] == "sgd"  # a fixed value wins
    assert narrowed["learning_rate"] == 0.005  # the default, moved into the narrowed range
    assert narrowed["dense_units"] in (96, 112, 128) and space["dense_units"].check_value(narrowed["dense_units"])
