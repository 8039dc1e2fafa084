"""Trial processes seen from their parent: one warm slot process per slot, a fresh forked
child per trial (see ``trial_process`` for why and how).

``SlotPool(slots).acquire(slot)`` gives the slot's ``SlotProcess``, started (and warmed)
once and restarted if it died; ``start_trial`` hands it a spec, ``receive`` yields the
trial's messages, ``send_control`` answers them. A trial whose child dies without a result
raises ``TrialProcessDied``; the slot process itself survives and takes the next trial.

Thread-safe for one thread per slot, which is how the runner drives it.
"""
from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from workers.engine.devices import Slot, trial_environment
from workers.engine.messages import (
    Control,
    Message,
    MessageError,
    ProcessExit,
    ProcessReady,
    TrialResult,
    TrialSpec,
    message_from_json,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TRIAL_MODULE = "workers.engine.trial_process"
READY_TIMEOUT = 300.0  # importing TensorFlow on a loaded machine can take a while


class TrialProcessDied(RuntimeError):
    """A trial ended without a result (its process was killed, crashed, ran out of memory)."""


class SlotProcess:
    """One slot process and the parent's end of its pipe."""

    def __init__(self, slot: Slot, *, python: str = sys.executable, module: str = TRIAL_MODULE) -> None:
        self.slot = slot
        self.process = subprocess.Popen(
            [python, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=trial_environment(slot),
            cwd=PROJECT_ROOT,
            process_group=0,  # its own group: kill() reaches the trial child too
            text=True,
            bufsize=1,
        )
        self._messages: queue.Queue[Message | None] = queue.Queue()
        self._ready = threading.Event()
        self._warmed = False  # it has said ready once: its imports are done
        self._awaiting_result = False
        # TensorFlow is chatty on stderr; keep the tail to explain a crash.
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.process.stderr,), daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                message = message_from_json(line)
            except MessageError as error:
                self.stderr_tail.append(f"bad protocol line ignored: {error}")
                continue
            if isinstance(message, ProcessReady):
                self._warmed = True
                self._ready.set()
            else:
                self._messages.put(message)
        self._messages.put(None)  # end of stream: the slot process is gone
        self._ready.set()

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self.stderr_tail.append(line.rstrip())

    def _write(self, line: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # it has gone; receive() reports how

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        if not self._ready.wait(timeout):
            raise TrialProcessDied(f"The slot process {self.pid} was not ready after {timeout:.0f} s.")
        if not self.is_alive():
            raise TrialProcessDied(self._death_message("The slot process", self.process.wait()))

    def start_trial(self, spec: TrialSpec) -> None:
        """Hand a trial to the slot (waits until the previous one's process has exited)."""
        self.wait_ready()
        self._ready.clear()
        # What is left of the previous trial (its ProcessExit, anything unread) came before
        # the ProcessReady we just waited for: drop it, but keep an end of stream.
        while True:
            try:
                leftover = self._messages.get_nowait()
            except queue.Empty:
                break
            if leftover is None:
                self._messages.put(None)
                break
        self._awaiting_result = True
        self._write(spec.to_json())

    def send_control(self, action: str) -> None:
        self._write(Control(action).to_json())

    def receive(self, timeout: float) -> Message | None:
        """The trial's next message, or ``None`` after ``timeout`` seconds of silence.

        Raises ``TrialProcessDied`` when the trial's process ended without a result.
        """
        while True:
            try:
                message = self._messages.get(timeout=timeout)
            except queue.Empty:
                return None
            if message is None:
                self._messages.put(None)  # stays at end of stream for later calls
                raise TrialProcessDied(self._death_message("The slot process", self.process.wait()))
            if isinstance(message, ProcessExit):
                if self._awaiting_result:
                    self._awaiting_result = False
                    raise TrialProcessDied(self._death_message("The trial process", message.code, message.pid))
                continue
            if isinstance(message, TrialResult):
                self._awaiting_result = False
            return message

    def _death_message(self, what: str, code: int, pid: int | None = None) -> str:
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        tail = "\n".join(list(self.stderr_tail)[-8:])
        return f"{what} {pid or self.pid} ended without a result ({how})." + (f"\nLast output:\n{tail}" if tail else "")

    def kill(self) -> None:
        """End the slot process and its trial at once (a trial that ignores "stop")."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self.process.kill()
        self.process.wait()

    def close(self, grace: float = 5.0) -> None:
        """Close the pipe (the slot process exits) and make sure it is gone. One still
        importing (warming up) reads no pipe yet and has no trial to lose: killed at once."""
        if not self._warmed:
            self.kill()
            return
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()


class SlotPool:
    """One warm ``SlotProcess`` per slot, restarted when it has died."""

    def __init__(self, slots: list[Slot], *, python: str = sys.executable, module: str = TRIAL_MODULE) -> None:
        self.slots = slots
        self.python = python
        self.module = module
        self._processes: dict[int, SlotProcess] = {}
        self._lock = threading.Lock()
        self._closed = False

    def warm(self) -> None:
        """Start every slot's process now, so imports overlap the study's set-up."""
        for slot in self.slots:
            self._process(slot)

    def _process(self, slot: Slot) -> SlotProcess:
        with self._lock:
            if self._closed:
                raise RuntimeError("The slot pool is closed.")
            process = self._processes.get(slot.index)
            if process is None or not process.is_alive():
                process = SlotProcess(slot, python=self.python, module=self.module)
                self._processes[slot.index] = process
            return process

    def acquire(self, slot: Slot) -> SlotProcess:
        """The slot's process, alive and ready for a trial."""
        process = self._process(slot)
        process.wait_ready()
        return process

    def close(self) -> None:
        with self._lock:
            self._closed = True
            processes, self._processes = list(self._processes.values()), {}
        deadline = time.monotonic() + 5
        for process in processes:
            process.close(grace=max(0.1, deadline - time.monotonic()))
