"""Slot assignment and strategy choice (no GPU needed: GPU ids are given)."""
from __future__ import annotations

import pytest

from workers.engine.devices import Slot, detect_gpus, plan_slots, strategy_name, trial_environment


def test_one_trial_per_gpu() -> None:
    assert plan_slots([0, 1, 2, 3]) == [Slot(0, (0,)), Slot(1, (1,)), Slot(2, (2,)), Slot(3, (3,))]


def test_several_gpus_per_trial_and_leftovers_stay_idle() -> None:
    assert plan_slots([0, 1, 2, 3, 4], gpus_per_trial=2) == [Slot(0, (0, 1)), Slot(1, (2, 3))]


def test_cpu_slots_without_gpu() -> None:
    assert plan_slots([], cpu_slots=3) == [Slot(0), Slot(1), Slot(2)]
    assert plan_slots([], gpus_per_trial=4) == [Slot(0)]


def test_too_many_gpus_per_trial_is_an_error_naming_the_machine() -> None:
    with pytest.raises(ValueError, match="asks for 4 GPUs but this machine has 2"):
        plan_slots([0, 1], gpus_per_trial=4)


def test_mirrored_strategy_only_for_several_gpus() -> None:
    assert [strategy_name(n) for n in (0, 1, 2, 8)] == ["default", "default", "mirrored", "mirrored"]


def test_environment_pins_the_slot_gpus() -> None:
    assert trial_environment(Slot(0, (1, 3)), {})["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert trial_environment(Slot(2), {})["CUDA_VISIBLE_DEVICES"] == ""


def test_gpu_detection_follows_hpo_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_GPUS", "0,1")
    assert detect_gpus() == [0, 1]
    monkeypatch.setenv("HPO_GPUS", "")
    assert detect_gpus() == []
