"""A trial process without TensorFlow, for testing the pipe protocol and the pool.

``spec.params["behaviour"]`` or env ``FAKE_BEHAVIOUR``: "normal" (3 epochs, obeys controls),
"paced" (3 epochs of 0.2 s), "fail" (ends failed), "crash" (dies mid-trial),
"chatty" (prints to stdout, which must not corrupt the protocol), "slow" (trains until a
stop arrives). ``Started.worker`` carries CUDA_VISIBLE_DEVICES so tests can check pinning.
"""
from __future__ import annotations

import os
import sys
import time

from workers.engine.messages import EpochEnd, Message, Progress, Started, TrialResult, TrialSpec
from workers.engine.trial_process import PipeChannel, serve


def run(spec: TrialSpec, channel: PipeChannel) -> Message:
    behaviour = spec.params.get("behaviour") or os.environ.get("FAKE_BEHAVIOUR", "normal")
    # Odd trials score a tenth of even ones, so a median pruner has something to prune.
    quality = 1.0 if spec.trial_number % 2 == 0 else 0.1
    channel.send(
        Started(spec.trial_id, {"layers": [], "pid": os.getpid()}, 42, worker=f"gpus={os.environ.get('CUDA_VISIBLE_DEVICES')!r}")
    )
    if behaviour == "chatty":
        print("some library printing to stdout", flush=True)
    epochs = 1000 if behaviour == "slow" else 3
    for epoch in range(1, epochs + 1):
        for batch in range(1, 11):
            if behaviour == "crash" and epoch == 2:
                os._exit(3)
            control = channel.poll_control()
            if control is not None and control.action == "stop":
                return TrialResult(spec.trial_id, "cancelled", reason="stopped")
            if behaviour == "slow":
                time.sleep(0.05)
            elif behaviour == "paced":
                time.sleep(float(os.environ.get("FAKE_BATCH_SECONDS", "0.02")))
            channel.send(Progress(spec.trial_id, epoch, epochs, batch, 10, {"loss": 1.0 / batch}))
        score = quality * epoch / 10
        channel.send(EpochEnd(spec.trial_id, epoch, epochs, {"val_accuracy": score}, 0.01, score))
        if not spec.wait_for_pruner:
            continue
        answer = channel.wait_control()
        if answer.action == "prune":
            return TrialResult(spec.trial_id, "pruned", reason=f"pruned after {epoch}")
        if answer.action == "stop":
            return TrialResult(spec.trial_id, "cancelled", reason="stopped")
    if behaviour == "fail":
        return TrialResult(spec.trial_id, "failed", reason="MemoryError: out of memory", traceback="Traceback ...")
    accuracy = quality * epochs / 10
    return TrialResult(
        spec.trial_id, "complete", accuracy=accuracy, health_score=0.9, total_score=accuracy,
        architecture={"layers": [], "family": "cnn"}, param_count=42, seconds=0.1,
    )


if __name__ == "__main__":
    sys.exit(serve(run, warm_up=lambda: None))
