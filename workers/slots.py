"""Which slot a qcluster worker process trains on.

Each worker process runs one task at a time, so it needs one slot. Without a GPU every
worker gets a CPU slot. With GPUs, a worker claims a free GPU slot by taking an exclusive
``flock`` on ``<HPO_VAR_DIR>/slots/gpu-<i>.lock`` for as long as it lives (a killed worker's
lock goes with it); with no GPU slot free it trains on the CPU.
"""
from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from django.conf import settings

from workers.engine.devices import Slot, detect_gpus, plan_slots

logger = logging.getLogger(__name__)
_held: list[IO[bytes]] = []  # open lock files: the locks last as long as the process


def claim_worker_slot() -> Slot:
    gpus = detect_gpus()
    gpu_slots = plan_slots(gpus, gpus_per_trial=settings.HPO_GPUS_PER_TRIAL) if gpus else []
    folder = Path(settings.VAR_DIR) / "slots"
    folder.mkdir(parents=True, exist_ok=True)
    for slot in gpu_slots:
        lock = open(folder / f"gpu-{slot.index}.lock", "wb")  # noqa: SIM115 (held open on purpose)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        _held.append(lock)
        logger.info("worker %s trains on %s", os.getpid(), slot.label)
        return slot
    if gpu_slots:
        logger.warning("worker %s found every GPU slot taken; it trains on the CPU", os.getpid())
    return Slot(index=os.getpid())
