"""The hyperparameter search spaces, defined once and sampled through Optuna's suggest API.

No TensorFlow or Keras here, and no Django: the scheduler samples parameters in a parent
process that must stay light, and the web side validates user overrides with the same table.

A study's overrides narrow the space per parameter:

    {"filters": 32}                                  fix a value (still recorded in trial.params)
    {"learning_rate": {"low": 1e-3, "high": 5e-3}}   narrow a numeric range
    {"optimizer": {"choices": ["adam", "nadam"]}}    narrow a categorical

``validate_overrides`` returns them normalized (JSON-safe, every range with both ends), so
what is stored is what is sampled.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workers.engine.catalog import IMAGE, TEXT

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

INT = "int"
FLOAT = "float"
CATEGORICAL = "categorical"
KINDS = (INT, FLOAT, CATEGORICAL)

DEFAULT_MAX_EPOCHS = 10
EPOCHS = "epochs"


class SearchSpaceError(ValueError):
    """Overrides or a CLI ``--set`` that do not fit the space; the message names the
    parameter and what is allowed."""


def _fmt(value: Any) -> str:
    # JSON spelling for booleans: what the API and the CLI (--set batch_norm=true) take.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return repr(value)


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter: an int or float range (optionally log-scaled or stepped) or a
    tuple of choices. Immutable; narrowing returns a new spec."""

    name: str
    kind: str  # INT | FLOAT | CATEGORICAL
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int | None = None
    choices: tuple[Any, ...] | None = None
    help: str = ""
    # The first trial of a study trains the defaults (as KerasTuner does): a sound,
    # conventional network, so the search starts from a known-good point.
    default: Any = None

    def __post_init__(self) -> None:
        # Programmer errors in the tables below, not user input: plain ValueError.
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r} is not one of {KINDS}")
        if self.kind == CATEGORICAL:
            if not self.choices:
                raise ValueError(f"{self.name}: a categorical needs choices")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"{self.name}: a numeric parameter needs low <= high")

    @property
    def bounds(self) -> str:
        """What is allowed, as error messages and the CLI show it."""
        if self.kind == CATEGORICAL:
            return ", ".join(_fmt(choice) for choice in self.choices or ())
        text = f"{_fmt(self.low)}..{_fmt(self.high)}"
        if self.step and self.step != 1:
            text += f" (step {self.step})"
        return text

    def check_value(self, value: Any) -> Any:
        """``value`` normalized to this parameter's type, or ``SearchSpaceError``."""
        if self.kind == CATEGORICAL:
            for choice in self.choices or ():
                # Strict on type: True == 1 in Python, but batch_norm=1 is a mistake.
                if type(choice) is type(value) and choice == value:
                    return choice
            raise SearchSpaceError(f"{self.name}: {value!r} is not one of {self.bounds}")
        if self.kind == INT:
            if type(value) is not int:
                raise SearchSpaceError(f"{self.name}: expected an integer, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SearchSpaceError(f"{self.name}: expected a number, got {value!r}")
        else:
            value = float(value)
            if not math.isfinite(value):
                raise SearchSpaceError(f"{self.name}: {value!r} is not a finite number")
        assert self.low is not None and self.high is not None
        if not self.low <= value <= self.high:
            raise SearchSpaceError(f"{self.name}: {_fmt(value)} is outside {self.bounds}")
        if self.kind == INT and self.step and (value - int(self.low)) % self.step:
            raise SearchSpaceError(f"{self.name}: {value} is not on the grid {self.bounds}")
        return value

    def default_value(self) -> Any:
        """The default, or the nearest allowed value when overrides have narrowed it away."""
        if self.kind == CATEGORICAL:
            choices = self.choices or ()
            return self.default if any(type(c) is type(self.default) and c == self.default for c in choices) else choices[0]
        assert self.low is not None and self.high is not None
        value = self.high if self.default is None else min(max(self.default, self.low), self.high)
        if self.kind == INT:
            step = self.step or 1
            value = int(self.low) + round((value - self.low) / step) * step
            value = min(value, int(self.low) + (int(self.high) - int(self.low)) // step * step)
            return int(value)
        return float(value)

    def narrowed(self, override: Any) -> ParamSpec:
        """This spec restricted by a normalized override (see ``validate_overrides``)."""
        if isinstance(override, Mapping) and "choices" in override:
            return dataclasses.replace(self, choices=tuple(override["choices"]))
        if isinstance(override, Mapping):
            return dataclasses.replace(self, low=override["low"], high=override["high"])
        if self.kind == CATEGORICAL:
            return dataclasses.replace(self, choices=(override,))
        return dataclasses.replace(self, low=override, high=override, log=False)

    def suggest(self, trial: BaseTrial) -> Any:
        """Sample through ``trial`` so the value (fixed or not) lands in ``trial.params``."""
        if self.kind == CATEGORICAL:
            return trial.suggest_categorical(self.name, list(self.choices or ()))
        assert self.low is not None and self.high is not None
        if self.kind == INT:
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=self.step or 1, log=self.log
            )
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "step": self.step,
            "choices": list(self.choices) if self.choices is not None else None,
            "help": self.help,
            "default": self.default,
        }


def _training_specs(max_epochs: int) -> list[ParamSpec]:
    return [
        ParamSpec("optimizer", CATEGORICAL, choices=("adam", "rmsprop", "sgd", "nadam"),
                  help="optimizer algorithm", default="adam"),
        ParamSpec("learning_rate", FLOAT, 1e-4, 1e-2, log=True,
                  help="optimizer learning rate (log scale)", default=2e-3),
        ParamSpec("batch_size", CATEGORICAL, choices=(16, 32, 64, 128),
                  help="examples per training batch", default=32),
        # No default: the most epochs the study allows (the best epoch's model is kept).
        ParamSpec(EPOCHS, INT, max(1, math.ceil(max_epochs / 2)), max_epochs,
                  help="training epochs (from half the study's max_epochs up to it)"),
    ]


def _space(specs: list[ParamSpec]) -> dict[str, ParamSpec]:
    return {spec.name: spec for spec in specs}


CNN_SPACE: dict[str, ParamSpec] = _space([
    ParamSpec("conv_blocks", INT, 1, 3, help="convolution blocks (conv, norm, activation, pool)",
              default=2),
    ParamSpec("filters", CATEGORICAL, choices=(16, 32, 64, 128),
              help="filters of the first block, doubled in each further block", default=32),
    ParamSpec("kernel_size", CATEGORICAL, choices=(3, 5), help="convolution kernel size", default=3),
    ParamSpec("activation", CATEGORICAL, choices=("relu", "elu", "tanh", "selu"),
              help="activation of conv and dense layers", default="relu"),
    ParamSpec("pooling", CATEGORICAL, choices=("max", "avg", "none"),
              help="2x2 pooling after each block (skipped once the image is 1 pixel wide)",
              default="max"),
    ParamSpec("batch_norm", CATEGORICAL, choices=(True, False),
              help="batch normalization after each convolution", default=True),
    ParamSpec("dropout", FLOAT, 0.0, 0.5, help="dropout rate before the dense head", default=0.25),
    ParamSpec("dense_layers", INT, 0, 2, help="hidden dense layers before the output", default=1),
    ParamSpec("dense_units", INT, 32, 256, step=32, help="units of each hidden dense layer",
              default=128),
    *_training_specs(DEFAULT_MAX_EPOCHS),
])

LSTM_SPACE: dict[str, ParamSpec] = _space([
    ParamSpec("embedding_dim", INT, 16, 128, step=16, help="word embedding size", default=64),
    ParamSpec("lstm_layers", INT, 1, 2, help="stacked LSTM layers", default=1),
    ParamSpec("lstm_units", INT, 16, 128, step=16, help="units of each LSTM layer", default=64),
    ParamSpec("bidirectional", CATEGORICAL, choices=(True, False),
              help="read the sequence both ways", default=True),
    ParamSpec("dropout", FLOAT, 0.0, 0.5, help="dropout rate before the dense head", default=0.2),
    ParamSpec("dense_layers", INT, 0, 1, help="hidden dense layers before the output", default=0),
    ParamSpec("dense_units", INT, 16, 128, step=16, help="units of each hidden dense layer",
              default=64),
    *_training_specs(DEFAULT_MAX_EPOCHS),
])

_SPACES = {IMAGE: CNN_SPACE, TEXT: LSTM_SPACE}


def space_for(kind: str, *, max_epochs: int) -> dict[str, ParamSpec]:
    """The full space of a data-set kind ("image": CNN, "text": LSTM), its ``epochs`` range
    set from ``max_epochs``. A fresh dict each call."""
    if kind not in _SPACES:
        raise SearchSpaceError(f"unknown model kind {kind!r}; known: {', '.join(_SPACES)}")
    if type(max_epochs) is not int or max_epochs < 1:
        raise SearchSpaceError(f"max_epochs must be a positive integer, got {max_epochs!r}")
    space = dict(_SPACES[kind])
    space[EPOCHS] = _training_specs(max_epochs)[-1]
    return space


def _spec(space: dict[str, ParamSpec], kind: str, name: Any) -> ParamSpec:
    if name not in space:
        raise SearchSpaceError(
            f"unknown parameter {name!r} for {kind} models; allowed: {', '.join(space)}"
        )
    return space[name]


def _normalize(spec: ParamSpec, override: Any) -> Any:
    if not isinstance(override, Mapping):
        return spec.check_value(override)
    keys = set(override)
    if spec.kind == CATEGORICAL:
        if keys != {"choices"}:
            raise SearchSpaceError(
                f"{spec.name}: narrow a categorical with {{\"choices\": [...]}} "
                f"(a subset of {spec.bounds}), got keys {sorted(map(str, keys))}"
            )
        choices = override["choices"]
        if isinstance(choices, (str, bytes)) or not isinstance(choices, (list, tuple)) \
                or not choices:
            raise SearchSpaceError(
                f"{spec.name}: choices must be a non-empty list from {spec.bounds}"
            )
        picked = [spec.check_value(choice) for choice in choices]
        # Table order, no duplicates: the same subset always gives the same distribution.
        return {"choices": [c for c in spec.choices or () if any(c is p for p in picked)]}
    if not keys or not keys <= {"low", "high"}:
        raise SearchSpaceError(
            f"{spec.name}: narrow a range with {{\"low\": a, \"high\": b}} inside "
            f"{spec.bounds}, got keys {sorted(map(str, keys))}"
        )
    # The tables give int bounds for int parameters, so the defaults pass check_value.
    low = spec.check_value(override.get("low", spec.low))
    high = spec.check_value(override.get("high", spec.high))
    if low > high:
        raise SearchSpaceError(
            f"{spec.name}: empty range {_fmt(low)}..{_fmt(high)} (low > high); "
            f"allowed {spec.bounds}"
        )
    return {"low": low, "high": high}


def validate_overrides(kind: str, overrides: Any, *, max_epochs: int) -> dict[str, Any]:
    """``overrides`` checked against the space and normalized: fixed values in the
    parameter's type, ranges with both ``low`` and ``high``, choices as a list in table
    order. Raises ``SearchSpaceError`` naming the parameter and what it allows."""
    space = space_for(kind, max_epochs=max_epochs)
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise SearchSpaceError(f"overrides must be a mapping of name to value, got {overrides!r}")
    return {
        name: _normalize(_spec(space, kind, name), override)
        for name, override in overrides.items()
    }


def effective_space(
    kind: str, overrides: Any = None, *, max_epochs: int
) -> dict[str, ParamSpec]:
    """The space after overrides: what ``suggest_params`` samples from."""
    space = space_for(kind, max_epochs=max_epochs)
    normalized = validate_overrides(kind, overrides, max_epochs=max_epochs)
    return {
        name: spec.narrowed(normalized[name]) if name in normalized else spec
        for name, spec in space.items()
    }


def suggest_params(
    trial: BaseTrial, kind: str, overrides: Any = None, *, max_epochs: int
) -> dict[str, Any]:
    """One parameter set for ``trial``, every parameter (fixed ones included) sampled
    through the trial's suggest API so it shows in ``trial.params``."""
    space = effective_space(kind, overrides, max_epochs=max_epochs)
    return {name: spec.suggest(trial) for name, spec in space.items()}


def default_params(kind: str, overrides: Any = None, *, max_epochs: int) -> dict[str, Any]:
    """The default configuration within the (narrowed) space: what a study's first trial
    trains. Fixed parameters keep their fixed value."""
    space = effective_space(kind, overrides, max_epochs=max_epochs)
    return {name: spec.default_value() for name, spec in space.items()}


def describe_space(kind: str, *, max_epochs: int) -> list[dict[str, Any]]:
    """The space as JSON-safe rows for the CLI and API: name, kind, low, high, log, step,
    choices, help (keys that do not apply are ``None``)."""
    return [spec.describe() for spec in space_for(kind, max_epochs=max_epochs).values()]


_CLI_BOOLS = {"true": True, "false": False}


def _parse_cli_scalar(spec: ParamSpec, raw: str) -> Any:
    text = raw.strip()
    if spec.kind == FLOAT:
        try:
            return float(text)
        except ValueError:
            raise SearchSpaceError(f"{spec.name}: {text!r} is not a number") from None
    if spec.kind == INT:
        try:
            return int(text)
        except ValueError:
            raise SearchSpaceError(f"{spec.name}: {text!r} is not an integer") from None
    for choice in spec.choices or ():
        if isinstance(choice, bool):
            if _CLI_BOOLS.get(text.lower()) is choice:
                return choice
        elif _fmt(choice) == text:
            return choice
    raise SearchSpaceError(f"{spec.name}: {text!r} is not one of {spec.bounds}")


def parse_cli_override(kind: str, text: str, *, max_epochs: int) -> tuple[str, Any]:
    """A CLI ``--set`` argument as a validated override: ``name=value`` fixes a value
    (``true``/``false`` for booleans), ``name=low..high`` narrows a numeric range and
    ``name=a,b`` narrows a categorical. Returns ``(name, normalized override)``."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name or not raw.strip():
        raise SearchSpaceError(f"expected name=value, got {text!r}")
    spec = _spec(space_for(kind, max_epochs=max_epochs), kind, name)
    override: Any
    if spec.kind != CATEGORICAL and ".." in raw:
        low, _, high = raw.partition("..")
        override = {"low": _parse_cli_scalar(spec, low), "high": _parse_cli_scalar(spec, high)}
    elif spec.kind == CATEGORICAL and "," in raw:
        override = {"choices": [_parse_cli_scalar(spec, part) for part in raw.split(",")]}
    else:
        override = _parse_cli_scalar(spec, raw)
    return name, validate_overrides(kind, {name: override}, max_epochs=max_epochs)[name]
