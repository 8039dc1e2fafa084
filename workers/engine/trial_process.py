"""The trial process: ``python -m workers.engine.trial_process``.

Started ahead of need by ``workers.engine.process.WarmProcessPool``: it imports TensorFlow
and the engine first (about 3.6 s on 2 CPU cores), then waits on stdin for one
``TrialSpec`` line, trains it, writes the messages of the conversation as JSON lines on its
protocol stream, and exits, so every trial starts with fresh memory.

The protocol stream is the original stdout; stdout itself is pointed at stderr, so a print
or a library's chatter can never corrupt a message. SIGINT is ignored: a Ctrl+C reaches the
whole process group, and the parent decides how trials stop (a "stop" control).
"""
from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from typing import IO

from workers.engine.messages import Control, Message, MessageError, TrialSpec


class PipeChannel:
    """The trial's side of the pipe: messages out, controls in (read by a thread)."""

    def __init__(self, incoming: IO[str], outgoing: IO[str]) -> None:
        self._outgoing = outgoing
        self._controls: queue.Queue[Control] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(incoming,), daemon=True).start()

    def _read(self, incoming: IO[str]) -> None:
        for line in incoming:
            try:
                self._controls.put(Control.from_json(line))
            except MessageError as error:
                print(f"trial process: ignored a bad control line: {error}", file=sys.stderr)
        # The parent closed the pipe (it died or gave up on us): stop at the next batch.
        self._controls.put(Control("stop"))

    def send(self, message: Message) -> None:
        with self._lock:
            self._outgoing.write(message.to_json() + "\n")
            self._outgoing.flush()

    def poll_control(self) -> Control | None:
        try:
            return self._controls.get_nowait()
        except queue.Empty:
            return None

    def wait_control(self) -> Control:
        return self._controls.get()


def _warm_up() -> None:
    """Import everything a trial needs before the spec arrives (off the critical path)."""
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    from workers.engine import architecture, builder, datasets, health, training  # noqa: F401


def serve(run: Callable[[TrialSpec, PipeChannel], Message], warm_up: Callable[[], None]) -> int:
    """The life of a trial process: protect the protocol stream, warm up, take one spec,
    run it, send the result. ``run`` and ``warm_up`` are parameters for the tests."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    warm_up()
    line = sys.stdin.readline()
    if not line:  # the pool closed us before giving us a trial
        return 0
    spec = TrialSpec.from_json(line)
    channel = PipeChannel(sys.stdin, protocol)
    channel.send(run(spec, channel))
    return 0


def _run_trial(spec: TrialSpec, channel: PipeChannel) -> Message:
    from workers.engine.training import run_trial

    return run_trial(spec, channel)


if __name__ == "__main__":
    sys.exit(serve(_run_trial, _warm_up))
