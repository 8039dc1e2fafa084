"""Which trial runs where: GPU slots, CPU slots, and the distribution strategy.

A machine with G GPUs runs up to G // k trials at once, each pinned to its k GPUs with
``CUDA_VISIBLE_DEVICES`` (set in the trial process before TensorFlow is imported); a trial
given more than one GPU trains under ``MirroredStrategy``. Without a GPU, a configurable
number of CPU slots run trials side by side. Pure Python except ``make_strategy``, which
runs inside the trial process.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Slot:
    """One place a trial can run: an index and the GPU ids it owns (empty: CPU only)."""

    index: int
    gpus: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return f"gpu:{','.join(map(str, self.gpus))}" if self.gpus else f"cpu:{self.index}"


def detect_gpus() -> list[int]:
    """GPU ids from ``HPO_GPUS`` (e.g. "0,1"; "" for none) or from ``nvidia-smi``.

    Does not import TensorFlow: the parent process stays light and never claims a GPU.
    """
    configured = os.environ.get("HPO_GPUS")
    if configured is not None:
        return [int(part) for part in configured.split(",") if part.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(line) for line in listing.split() if line.strip().isdigit()]


def plan_slots(gpu_ids: list[int], *, gpus_per_trial: int = 1, cpu_slots: int = 1) -> list[Slot]:
    """Split the GPUs into slots of ``gpus_per_trial``; with no GPU, ``cpu_slots`` CPU slots.

    GPUs left over (G not a multiple of k) stay idle rather than give one trial fewer GPUs
    than asked.
    """
    if gpus_per_trial < 1:
        raise ValueError(f"gpus_per_trial must be 1 or more; got {gpus_per_trial}.")
    if cpu_slots < 1:
        raise ValueError(f"cpu_slots must be 1 or more; got {cpu_slots}.")
    if not gpu_ids:
        return [Slot(index) for index in range(cpu_slots)]
    if gpus_per_trial > len(gpu_ids):
        raise ValueError(
            f"A trial asks for {gpus_per_trial} GPUs but this machine has {len(gpu_ids)} "
            f"({', '.join(map(str, gpu_ids))})."
        )
    count = len(gpu_ids) // gpus_per_trial
    return [
        Slot(index, tuple(gpu_ids[index * gpus_per_trial : (index + 1) * gpus_per_trial]))
        for index in range(count)
    ]


def trial_environment(slot: Slot, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a trial process on ``slot``: only its GPUs are visible."""
    env = dict(os.environ if base is None else base)
    # An empty CUDA_VISIBLE_DEVICES hides every GPU: a CPU slot never grabs GPU memory.
    env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, slot.gpus))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def strategy_name(visible_gpus: int) -> str:
    """"mirrored" for a trial that sees several GPUs, else "default" (one device)."""
    return "mirrored" if visible_gpus > 1 else "default"


def make_strategy(visible_gpus: int) -> Any:
    """The ``tf.distribute`` strategy to build and train the model in (trial process only)."""
    import tensorflow as tf

    if strategy_name(visible_gpus) == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
