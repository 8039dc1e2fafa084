"""Slot processes and the pool, with a TensorFlow-free trial (``fake_trial_process``): the
pipe protocol, controls, a fresh process per trial, crashes, GPU pinning."""
from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from workers.engine.devices import Slot
from workers.engine.messages import EpochEnd, Progress, Started, TrialResult, TrialSpec
from workers.engine.process import SlotPool, SlotProcess, TrialProcessDied

FAKE = "tests.workers.engine.fake_trial_process"


def spec(behaviour: str = "normal", trial_id: int = 1) -> TrialSpec:
    return TrialSpec(
        study_id=1, trial_id=trial_id, trial_number=0, dataset="digits", params={"behaviour": behaviour}
    )


def drive(process: SlotProcess, answers: Iterator[str]) -> list[object]:
    """Run a trial to its result, answering each EpochEnd with the next action."""
    seen: list[object] = []
    while True:
        message = process.receive(timeout=20)
        assert message is not None, "the trial went silent"
        seen.append(message)
        if isinstance(message, EpochEnd):
            process.send_control(next(answers))
        if isinstance(message, TrialResult):
            return seen


@pytest.fixture
def process() -> Iterator[SlotProcess]:
    slot_process = SlotProcess(Slot(0), module=FAKE)
    yield slot_process
    slot_process.close()


def test_a_trial_runs_to_completion_over_the_pipe(process: SlotProcess) -> None:
    process.start_trial(spec())
    seen = drive(process, iter(["continue"] * 3))
    assert isinstance(seen[0], Started)
    assert sum(isinstance(m, Progress) for m in seen) == 30
    assert [m.epoch for m in seen if isinstance(m, EpochEnd)] == [1, 2, 3]
    result = seen[-1]
    assert isinstance(result, TrialResult) and result.status == "complete"


def test_each_trial_runs_in_a_fresh_process_of_the_slot(process: SlotProcess) -> None:
    pids = set()
    for trial_id in (1, 2, 3):
        process.start_trial(spec(trial_id=trial_id))
        seen = drive(process, iter(["continue"] * 3))
        pids.add(seen[0].architecture["pid"])  # type: ignore[attr-defined]
        assert seen[-1].trial_id == trial_id  # type: ignore[attr-defined]
    assert len(pids) == 3 and process.pid not in pids
    assert process.is_alive()


def test_prune_answer_ends_the_trial_as_pruned(process: SlotProcess) -> None:
    process.start_trial(spec())
    result = drive(process, iter(["continue", "prune"]))[-1]
    assert isinstance(result, TrialResult)
    assert (result.status, result.reason) == ("pruned", "pruned after 2")


def test_stop_reaches_a_training_trial_between_batches(process: SlotProcess) -> None:
    process.start_trial(spec("slow"))
    while not isinstance(process.receive(timeout=20), Progress):
        pass
    process.send_control("stop")
    seen = drive(process, iter(["continue"] * 1000))
    result = seen[-1]
    assert isinstance(result, TrialResult) and result.status == "cancelled"
    # It stopped within a batch or two of the request, not at the end of an epoch.
    assert sum(isinstance(m, Progress) for m in seen) <= 3


def test_a_crashed_trial_is_reported_and_the_slot_goes_on(process: SlotProcess) -> None:
    process.start_trial(spec("crash"))
    with pytest.raises(TrialProcessDied, match="exit code 3"):
        drive(process, iter(["continue"] * 3))
    process.start_trial(spec())
    assert drive(process, iter(["continue"] * 3))[-1].status == "complete"  # type: ignore[attr-defined]


def test_stdout_chatter_does_not_corrupt_the_protocol(process: SlotProcess) -> None:
    process.start_trial(spec("chatty"))
    result = drive(process, iter(["continue"] * 3))[-1]
    assert isinstance(result, TrialResult) and result.status == "complete"


def test_slots_pin_gpus_and_cpu_slots_hide_them() -> None:
    for slot, expected in ((Slot(0, (2, 3)), "gpus='2,3'"), (Slot(1), "gpus=''")):
        slot_process = SlotProcess(slot, module=FAKE)
        try:
            slot_process.start_trial(spec())
            started = slot_process.receive(timeout=20)
            assert isinstance(started, Started) and started.worker == expected
        finally:
            slot_process.kill()


def test_pool_restarts_a_dead_slot_process_and_leaves_nothing_behind() -> None:
    slot = Slot(0)
    pool = SlotPool([slot], module=FAKE)
    try:
        pool.warm()
        first = pool.acquire(slot)
        first.kill()
        second = pool.acquire(slot)
        assert second is not first and second.is_alive()
        second.start_trial(spec())
        assert drive(second, iter(["continue"] * 3))[-1].status == "complete"  # type: ignore[attr-defined]
    finally:
        pool.close()
    children = psutil.Process().children(recursive=True)
    assert [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
