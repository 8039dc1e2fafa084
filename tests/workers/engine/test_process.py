"""Trial processes and the warm pool, with a TensorFlow-free trial process
(``fake_trial_process``): the pipe protocol, controls, crashes, GPU pinning."""
from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from workers.engine.devices import Slot
from workers.engine.messages import EpochEnd, Progress, Started, TrialResult, TrialSpec
from workers.engine.process import TrialProcess, TrialProcessDied, WarmProcessPool

FAKE = "tests.workers.engine.fake_trial_process"


def spec(behaviour: str = "normal", trial_id: int = 1) -> TrialSpec:
    return TrialSpec(
        study_id=1, trial_id=trial_id, trial_number=0, dataset="digits", params={"behaviour": behaviour}
    )


def drive(process: TrialProcess, answers: Iterator[str]) -> list[object]:
    """Run a trial to its result, answering each EpochEnd with the next action."""
    seen: list[object] = []
    while True:
        message = process.receive(timeout=20)
        assert message is not None, "the trial process went silent"
        seen.append(message)
        if isinstance(message, EpochEnd):
            process.send_control(next(answers))
        if isinstance(message, TrialResult):
            return seen


@pytest.fixture
def process() -> Iterator[TrialProcess]:
    trial_process = TrialProcess(Slot(0), module=FAKE)
    yield trial_process
    trial_process.close()


def test_a_trial_runs_to_completion_over_the_pipe(process: TrialProcess) -> None:
    process.start_trial(spec())
    seen = drive(process, iter(["continue"] * 3))
    assert isinstance(seen[0], Started)
    assert sum(isinstance(m, Progress) for m in seen) == 30
    assert [m.epoch for m in seen if isinstance(m, EpochEnd)] == [1, 2, 3]
    result = seen[-1]
    assert isinstance(result, TrialResult) and result.status == "complete"
    assert process.process.wait(timeout=10) == 0  # one trial per process


def test_prune_answer_ends_the_trial_as_pruned(process: TrialProcess) -> None:
    process.start_trial(spec())
    result = drive(process, iter(["continue", "prune"]))[-1]
    assert isinstance(result, TrialResult)
    assert (result.status, result.reason) == ("pruned", "pruned after 2")


def test_stop_reaches_a_training_trial_between_batches(process: TrialProcess) -> None:
    process.start_trial(spec("slow"))
    while not isinstance(process.receive(timeout=20), Progress):
        pass
    process.send_control("stop")
    seen = drive(process, iter(["continue"] * 1000))
    result = seen[-1]
    assert isinstance(result, TrialResult) and result.status == "cancelled"
    # It stopped within a batch or two of the request, not at the end of an epoch.
    assert sum(isinstance(m, Progress) for m in seen) <= 3


def test_a_crashed_trial_process_is_reported_not_hung(process: TrialProcess) -> None:
    process.start_trial(spec("crash"))
    with pytest.raises(TrialProcessDied, match="exit code 3"):
        drive(process, iter(["continue"] * 3))


def test_stdout_chatter_does_not_corrupt_the_protocol(process: TrialProcess) -> None:
    process.start_trial(spec("chatty"))
    result = drive(process, iter(["continue"] * 3))[-1]
    assert isinstance(result, TrialResult) and result.status == "complete"


def test_slots_pin_gpus_and_cpu_slots_hide_them() -> None:
    for slot, expected in ((Slot(0, (2, 3)), "gpus='2,3'"), (Slot(1), "gpus=''")):
        trial_process = TrialProcess(slot, module=FAKE)
        try:
            trial_process.start_trial(spec())
            started = trial_process.receive(timeout=20)
            assert isinstance(started, Started) and started.worker == expected
        finally:
            trial_process.close(grace=0.5)


def test_pool_hands_out_warm_processes_and_keeps_a_spare() -> None:
    slot = Slot(0)
    pool = WarmProcessPool([slot], module=FAKE)
    try:
        pool.warm()
        first = pool.acquire(slot)
        spare_pid = pool._spares[slot.index].pid
        first.start_trial(spec())
        drive(first, iter(["continue"] * 3))
        first.close()
        second = pool.acquire(slot, keep_spare=False)
        assert second.pid == spare_pid  # the spare started while the first trial ran
        assert slot.index not in pool._spares
        second.close()
    finally:
        pool.close()
    children = psutil.Process().children(recursive=True)
    assert [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
