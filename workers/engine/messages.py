"""Everything that crosses a process boundary: scheduler to trial process, trial process to
its parent, worker to RunPod. Small frozen dataclasses of ids and primitives, with
``to_json`` / ``from_json``, versioned. No TensorFlow, no Django: both sides import this.

A ``TrialSpec`` names its data set; data sets are loaded by name where the trial runs, never
shipped, so a spec stays under 1 KB.

The conversation of one trial, parent (P) and trial process (T), over a pipe of JSON lines:

    P -> T  TrialSpec
    T -> P  Started             the model is built: its architecture, for the 3D viewer
    T -> P  Progress            every N batches: epoch, fraction of the epoch, running metrics
    T -> P  EpochEnd            after each epoch; T then waits for a Control (unless the
                                spec says there is no pruner to ask)
    P -> T  Control             "continue", "prune" (the pruner said so) or "stop" (cancelled)
    T -> P  TrialResult         once, at the end (complete, pruned, unhealthy, cancelled, failed)

P may also send Control("stop") at any time; T checks for it between batches.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

SCHEMA_VERSION = 1

_M = TypeVar("_M", bound="Message")


class MessageError(ValueError):
    """A message that cannot be read: wrong type, version or fields."""


@dataclass(frozen=True)
class Message:
    TYPE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "version": SCHEMA_VERSION, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        # allow_nan: a diverging trial reports NaN or infinite losses, and they must arrive.
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=True)

    @classmethod
    def from_dict(cls: type[_M], data: dict[str, Any]) -> _M:
        if data.get("type") != cls.TYPE:
            raise MessageError(f"expected a {cls.TYPE!r} message, got {data.get('type')!r}")
        if data.get("version") != SCHEMA_VERSION:
            raise MessageError(
                f"{cls.TYPE} message version {data.get('version')!r} is not {SCHEMA_VERSION}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - {"type", "version"}
        if unknown:
            raise MessageError(f"{cls.TYPE} message has unknown fields: {sorted(unknown)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as error:
            raise MessageError(f"{cls.TYPE} message is incomplete: {error}") from None

    @classmethod
    def from_json(cls: type[_M], text: str) -> _M:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class TrialSpec(Message):
    """What to train: everything a trial process (local or on RunPod) needs.

    ``params`` is the concrete parameter dict chosen by Optuna (see ``search_space``);
    ``health_weights`` the mode-``health`` weights (``scoring.DEFAULT_WEIGHTS`` if empty).
    """

    TYPE: ClassVar[str] = "trial.spec"
    study_id: int
    trial_id: int
    trial_number: int
    dataset: str
    params: dict[str, Any]
    seed: int = 0
    max_epochs: int = 10
    sample_fraction: float = 1.0
    validation_split: float = 0.2
    mode: str = "simple"
    health_weights: dict[str, float] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # vocab_size, path, ...
    gpus: list[int] = field(default_factory=list)  # device ids; empty: CPU
    progress_every_batches: int = 10
    # False when the study has no pruner: the trial then trains on after each EpochEnd
    # without waiting for an answer (a "stop" is still honoured between batches).
    wait_for_pruner: bool = True
    artifacts_dir: str = ""  # where the trial may write files (model, plots data)
    save_model: bool = True


@dataclass(frozen=True)
class Started(Message):
    """The model is built and training begins; ``architecture`` as ``extract_architecture``."""

    TYPE: ClassVar[str] = "trial.started"
    trial_id: int
    architecture: dict[str, Any]
    param_count: int
    strategy: str = "default"
    worker: str = ""


@dataclass(frozen=True)
class Progress(Message):
    """Batch-level progress inside an epoch (epochs count from 1)."""

    TYPE: ClassVar[str] = "trial.progress"
    trial_id: int
    epoch: int
    epochs: int
    batch: int
    batches: int
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.batch / self.batches if self.batches else 0.0


@dataclass(frozen=True)
class EpochEnd(Message):
    """One finished epoch: its metrics (loss, accuracy, val_loss, val_accuracy) and time.
    ``score`` is what is reported to Optuna for pruning (the validation accuracy)."""

    TYPE: ClassVar[str] = "trial.epoch"
    trial_id: int
    epoch: int
    epochs: int
    metrics: dict[str, float]
    seconds: float
    score: float


@dataclass(frozen=True)
class Control(Message):
    TYPE: ClassVar[str] = "trial.control"
    action: str  # "continue" | "prune" | "stop"

    ACTIONS: ClassVar[tuple[str, ...]] = ("continue", "prune", "stop")

    def __post_init__(self) -> None:
        if self.action not in self.ACTIONS:
            raise MessageError(f"control action {self.action!r} is not one of {self.ACTIONS}")


@dataclass(frozen=True)
class TrialResult(Message):
    """How a trial ended and all it produced.

    ``status``: "complete"; "pruned" (the pruner stopped it); "unhealthy" (NaN or exploding
    loss, stopped early, ``reason`` says which); "cancelled" (a stop came); "failed" (an
    exception; ``reason`` is readable, ``traceback`` has the details).
    """

    TYPE: ClassVar[str] = "trial.result"
    trial_id: int
    status: str
    reason: str = ""
    traceback: str = ""
    accuracy: float | None = None  # best validation accuracy over the epochs
    health_score: float | None = None
    total_score: float | None = None
    health: dict[str, Any] = field(default_factory=dict)  # metrics and components
    architecture: dict[str, Any] = field(default_factory=dict)
    param_count: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch
    confusion_matrix: list[list[int]] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> file path
    seconds: float = 0.0
    worker: str = ""

    STATUSES: ClassVar[tuple[str, ...]] = ("complete", "pruned", "unhealthy", "cancelled", "failed")


@dataclass(frozen=True)
class ProcessReady(Message):
    """The slot's process has imported everything and waits for a ``TrialSpec``."""

    TYPE: ClassVar[str] = "process.ready"
    pid: int


@dataclass(frozen=True)
class ProcessExit(Message):
    """The process that ran a trial has ended (after its result, or instead of one)."""

    TYPE: ClassVar[str] = "process.exit"
    pid: int
    code: int


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (TrialSpec, Started, Progress, EpochEnd, Control, TrialResult, ProcessReady, ProcessExit)
}


def message_from_json(text: str) -> Message:
    """Read any message by its ``type``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise MessageError(f"not JSON: {error}") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in MESSAGE_TYPES:
        raise MessageError(f"unknown message type {kind!r}; known: {sorted(MESSAGE_TYPES)}")
    return MESSAGE_TYPES[kind].from_dict(data)
