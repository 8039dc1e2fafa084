"""Trial processes seen from their parent: start them warm, talk to them, reap them.

Each trial trains in a fresh process (TensorFlow does not give memory back inside a
process). Starting one costs the TensorFlow import, longer than a small trial; so the pool
keeps one spare process per slot, started as soon as the previous one is taken, importing
while the current trial trains. A trial then starts on a process that is already warm.

Thread-safe: one thread per slot may call ``acquire`` and drive its ``TrialProcess``.
"""
from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from workers.engine.devices import Slot, trial_environment
from workers.engine.messages import Control, Message, MessageError, TrialSpec, message_from_json

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TRIAL_MODULE = "workers.engine.trial_process"


class TrialProcessDied(RuntimeError):
    """The trial process ended without a result (killed, crashed, out of memory)."""


class TrialProcess:
    """One trial process and the parent's end of its pipe."""

    def __init__(self, slot: Slot, *, python: str = sys.executable, module: str = TRIAL_MODULE) -> None:
        self.slot = slot
        self.process = subprocess.Popen(
            [python, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=trial_environment(slot),
            cwd=PROJECT_ROOT,
            text=True,
            bufsize=1,
        )
        self._messages: queue.Queue[Message | None] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                self._messages.put(message_from_json(line))
            except MessageError as error:
                print(f"trial process {self.pid}: ignored a bad line: {error}", file=sys.stderr)
        self._messages.put(None)  # end of stream

    def _write(self, line: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # it has gone; receive() reports how

    def start_trial(self, spec: TrialSpec) -> None:
        self._write(spec.to_json())

    def send_control(self, action: str) -> None:
        self._write(Control(action).to_json())

    def receive(self, timeout: float) -> Message | None:
        """The next message, or ``None`` after ``timeout`` seconds of silence.

        Raises ``TrialProcessDied`` when the process ended without sending its result.
        """
        try:
            message = self._messages.get(timeout=timeout)
        except queue.Empty:
            return None
        if message is None:
            code = self.process.wait()
            raise TrialProcessDied(f"The trial process {self.pid} ended without a result (exit code {code}).")
        return message

    def close(self, grace: float = 5.0) -> None:
        """Close the pipe and make sure the process is gone."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class WarmProcessPool:
    """One warm spare ``TrialProcess`` per slot."""

    def __init__(self, slots: list[Slot], *, python: str = sys.executable, module: str = TRIAL_MODULE) -> None:
        self.slots = slots
        self.python = python
        self.module = module
        self._spares: dict[int, TrialProcess] = {}
        self._lock = threading.Lock()
        self._closed = False

    def warm(self) -> None:
        """Start a spare for every slot now (e.g. while the study is being set up)."""
        for slot in self.slots:
            with self._lock:
                if slot.index not in self._spares and not self._closed:
                    self._spares[slot.index] = TrialProcess(slot, python=self.python, module=self.module)

    def acquire(self, slot: Slot, *, keep_spare: bool = True) -> TrialProcess:
        """The slot's warm process (started now if there is none). A new spare starts at
        once, warming while this trial trains, unless no further trial is expected."""
        with self._lock:
            if self._closed:
                raise RuntimeError("The process pool is closed.")
            process = self._spares.pop(slot.index, None)
            if process is None or process.process.poll() is not None:
                process = TrialProcess(slot, python=self.python, module=self.module)
            if keep_spare:
                self._spares[slot.index] = TrialProcess(slot, python=self.python, module=self.module)
        return process

    def close(self) -> None:
        """Stop the spares (they exit when their stdin closes)."""
        with self._lock:
            self._closed = True
            spares, self._spares = list(self._spares.values()), {}
        deadline = time.monotonic() + 5
        for process in spares:
            process.close(grace=max(0.1, deadline - time.monotonic()))
