"""A slot process whose trials sleep a fixed time instead of training (no TensorFlow), for
``bench/scaling.py``: the cost measured is the platform's, not the model's."""
from __future__ import annotations

import os
import sys
import time

from workers.engine.messages import EpochEnd, Message, Started, TrialResult, TrialSpec
from workers.engine.trial_process import PipeChannel, serve


def run(spec: TrialSpec, channel: PipeChannel) -> Message:
    seconds = float(os.environ.get("SLEEP_SECONDS", "2"))
    channel.send(Started(spec.trial_id, {"layers": [], "family": "other"}, 0))
    time.sleep(seconds)
    channel.send(EpochEnd(spec.trial_id, 1, 1, {"val_accuracy": 0.5}, seconds, 0.5))
    if spec.wait_for_pruner:
        channel.wait_control()
    return TrialResult(spec.trial_id, "complete", accuracy=0.5, health_score=1.0, total_score=0.5, seconds=seconds)


if __name__ == "__main__":
    sys.exit(serve(run, warm_up=lambda: None))
