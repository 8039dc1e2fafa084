"""The slot process: ``python -m workers.engine.trial_process``, one per slot.

It imports TensorFlow and the engine once (about 3.6 s on 2 CPU cores), says it is ready,
and then, for each ``TrialSpec`` line on stdin, forks a child that trains that one trial
and exits. Every trial so starts in a fresh process (TensorFlow does not give memory back
inside a process) without paying the import: the fork shares the imported modules
copy-on-write. Safe because the slot process never runs a TensorFlow op itself (no runtime
threads exist when it forks), and its ``CUDA_VISIBLE_DEVICES`` pins every child to the
slot's GPUs before any CUDA call. Linux only (fork).

The conversation (JSON lines; see ``messages``):

    S -> P  ProcessReady                        once imported, and after each trial
    P -> S  TrialSpec                           the child takes over stdin and stdout
    C -> P  Started, Progress, EpochEnd, ...    P answers EpochEnd with a Control
    C -> P  TrialResult
    S -> P  ProcessExit                         the child's exit code; then ProcessReady

The protocol stream is the original stdout; stdout itself is pointed at stderr, so a print
or a library's chatter can never corrupt a message. SIGINT is ignored: a Ctrl+C reaches the
whole process group, and the parent decides how trials stop (a "stop" control). Stdin is
read unbuffered, line by line, so a forked child never inherits bytes meant for another.
"""
from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from typing import IO

from workers.engine.messages import Control, Message, MessageError, ProcessExit, ProcessReady, TrialSpec, message_from_json


def read_line(fd: int) -> str:
    """One line from ``fd`` without reading past it ("" at end of file)."""
    chunks = []
    while True:
        byte = os.read(fd, 1)
        if not byte:
            break
        chunks.append(byte)
        if byte == b"\n":
            break
    return b"".join(chunks).decode()


class PipeChannel:
    """The trial's side of the pipe: messages out, controls in (read by a thread)."""

    def __init__(self, incoming_fd: int, outgoing: IO[str]) -> None:
        self._outgoing = outgoing
        self._controls: queue.Queue[Control] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(incoming_fd,), daemon=True).start()

    def _read(self, incoming_fd: int) -> None:
        while line := read_line(incoming_fd):
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
    """Import everything a trial needs, once, before any trial (off the critical path)."""
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    from workers.engine import architecture, builder, datasets, health, training  # noqa: F401


def _run_child(run: Callable[[TrialSpec, PipeChannel], Message], spec: TrialSpec, protocol: IO[str]) -> None:
    code = 0
    try:
        channel = PipeChannel(0, protocol)
        channel.send(run(spec, channel))
    except BaseException:  # run() reports its own failures; this is a broken pipe or worse
        code = 1
    finally:
        protocol.flush()
        os._exit(code)


def serve(run: Callable[[TrialSpec, PipeChannel], Message], warm_up: Callable[[], None]) -> int:
    """The life of a slot process. ``run`` and ``warm_up`` are parameters for the tests."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    warm_up()
    pid = os.getpid()
    protocol.write(ProcessReady(pid).to_json() + "\n")
    while line := read_line(0):
        try:
            spec = message_from_json(line)
        except MessageError as error:
            print(f"slot process: ignored a bad line: {error}", file=sys.stderr)
            continue
        if not isinstance(spec, TrialSpec):
            continue  # a control that arrived after its trial ended
        child = os.fork()
        if child == 0:
            _run_child(run, spec, protocol)
        _, status = os.waitpid(child, 0)
        protocol.write(ProcessExit(child, os.waitstatus_to_exitcode(status)).to_json() + "\n")
        protocol.write(ProcessReady(pid).to_json() + "\n")
    return 0  # stdin closed: the pool is done with us


def _run_trial(spec: TrialSpec, channel: PipeChannel) -> Message:
    from workers.engine.training import run_trial

    return run_trial(spec, channel)


if __name__ == "__main__":
    sys.exit(serve(_run_trial, _warm_up))
