"""Scaling of cloud trials over RunPod workers, on the local cloud emulator.

    .venv/bin/python bench/runpod_scaling.py [--trials 24] [--sleep 2] [--cold-start 1] [--workers 1 2 4 6]

For each worker count: a fresh emulator (`runpod_service.emulator.Emulator`) running the
real handler in that many worker processes, each with a fixed cold start before its first
job; the trials' function sleeps a fixed time (`bench/sleep_trial_process.py`: no
TensorFlow, so the figure is the platform's and the cloud protocol's, not the model's). All
trials are submitted at once through the real runpod SDK client (`runpod.Endpoint.run`)
and followed with `job.status()` until they complete, as the executor does. The time is the
emulator's own record: from the first job's arrival to the last job's end (worker process
start-up before that is not counted; cold starts are). Prints the speedup over 1 worker
(target: at least 0.9 times the workers).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runpod_service.emulator import Emulator  # noqa: E402
from workers.engine.messages import TrialSpec  # noqa: E402


def spec(number: int) -> dict:
    return TrialSpec(
        study_id=1, trial_id=number + 1, trial_number=number, dataset="digits", params={"epochs": 1}, max_epochs=1
    ).to_dict()


def run(workers: int, trials: int, sleep: float, cold_start: float) -> tuple[float, float]:
    env = {"RUNPOD_TRIAL_FUNCTION": "bench.sleep_trial_process:run", "SLEEP_SECONDS": str(sleep)}
    with Emulator(workers, cold_start=cold_start, env=env) as emulator:
        if not emulator.wait_idle(timeout=120):
            raise SystemExit(f"{workers} worker(s) did not start")
        with emulator.sdk() as endpoint:
            jobs = [endpoint.run(spec(number)) for number in range(trials)]

            def follow(job: object) -> str:
                while True:
                    status = job.status()  # type: ignore[attr-defined]
                    if status in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
                        return str(status)
                    time.sleep(0.1)

            with ThreadPoolExecutor(max_workers=min(trials, 32)) as pool:
                statuses = list(pool.map(follow, jobs))
        if set(statuses) != {"COMPLETED"}:
            raise SystemExit(f"{workers} worker(s): not every job completed: {statuses}")
        records = [emulator.job(job.job_id) for job in jobs]
    first = min(record["created"] for record in records)
    last = max(record["finished"] for record in records)
    busy = sum(record["finished"] - record["started"] for record in records)
    return last - first, busy / (workers * (last - first))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--sleep", type=float, default=2.0)
    parser.add_argument("--cold-start", type=float, default=1.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 6])
    args = parser.parse_args()
    # Following 24 jobs from 24 threads overfills urllib3's pool of 10: harmless, noisy.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    print(f"{args.trials} trials sleeping {args.sleep:g} s each through the RunPod emulator, cold start {args.cold_start:g} s")
    baseline: float | None = None
    for workers in args.workers:
        seconds, busy = run(workers, args.trials, args.sleep, args.cold_start)
        if baseline is None:
            baseline = seconds * workers if workers != 1 else seconds
        speedup = baseline / seconds
        print(
            f"  {workers} worker(s): {seconds:6.1f} s, speedup {speedup:4.2f} (target >= {0.9 * workers:.1f}),"
            f" workers busy {100 * busy:.0f} %",
            flush=True,
        )


if __name__ == "__main__":
    main()
