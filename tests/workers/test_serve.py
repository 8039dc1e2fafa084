"""``manage.py serve`` as a user runs it: a real process tree, real signals, a real port.

Each test gets its own SQLite file, migrated in a subprocess, whatever database the suite
itself runs on: serve's children need a database they can share, not the test database.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from django.conf import settings

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def child_named(self, name: str) -> psutil.Process | None:
        for child in psutil.Process(self.process.pid).children():
            try:
                if name in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str, served: Served, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if served.process.poll() is not None:
            break
        time.sleep(0.25)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s; serve said:\n{served.output()}")


def answers_200(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def qcluster_is_up(served: Served) -> bool:
    # The qcluster main process starts a sentinel, which starts the workers, the monitor
    # and the pusher: with grandchildren, the cluster is running.
    qcluster = served.child_named("qcluster")
    if qcluster is None:
        return False
    try:
        return len(qcluster.children(recursive=True)) >= 2
    except psutil.NoSuchProcess:
        return False


def still_alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Served]:
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{tmp_path / 'serve.sqlite3'}",
        HPO_VAR_DIR=str(tmp_path),
        Q_BROKER="orm",
        Q_WORKERS="1",
    )
    subprocess.run(
        [sys.executable, MANAGE, "migrate", "--noinput", "-v0"], env=env, check=True, timeout=120
    )
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as log_stream:
        process = subprocess.Popen(
            [sys.executable, MANAGE, "serve", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Served(process=process, port=port, log=log)
    try:
        wait_until(lambda: answers_200(port), "daphne answering GET /", served, START_TIMEOUT)
        wait_until(lambda: qcluster_is_up(served), "the qcluster starting", served, START_TIMEOUT)
        yield served
    finally:
        leftovers = served.descendants()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for leftover in still_alive(leftovers):
            leftover.kill()


def test_sigint_to_the_process_group_stops_everything_cleanly(serve: Served) -> None:
    tree = serve.descendants()
    assert serve.child_named("daphne") is not None

    os.killpg(serve.process.pid, signal.SIGINT)  # what Ctrl+C in a terminal does

    assert serve.process.wait(timeout=STOP_TIMEOUT) == 0, serve.output()
    deadline = time.monotonic() + 5
    while still_alive(tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert still_alive(tree) == [], serve.output()
    assert not answers_200(serve.port)


def test_sigterm_stops_everything_cleanly(serve: Served) -> None:
    tree = serve.descendants()

    serve.process.send_signal(signal.SIGTERM)  # what a process manager does

    assert serve.process.wait(timeout=STOP_TIMEOUT) == 0, serve.output()
    time.sleep(0.5)
    assert still_alive(tree) == [], serve.output()


def test_a_dead_daphne_stops_the_qcluster_and_fails_naming_daphne(serve: Served) -> None:
    tree = serve.descendants()
    daphne = serve.child_named("daphne")
    assert daphne is not None

    daphne.kill()

    assert serve.process.wait(timeout=STOP_TIMEOUT) != 0
    output = serve.output()
    assert "daphne" in output and "exited unexpectedly" in output, output
    time.sleep(0.5)
    assert still_alive(tree) == [], output


def test_a_child_that_ignores_sigterm_is_killed_with_its_group(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.management.commands import serve as serve_command

    monkeypatch.setattr(serve_command, "STOP_TIMEOUT", 1.0)
    # A parent that ignores SIGTERM, with a grandchild that does too.
    stubborn = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    child = serve_command.Child(
        name="stubborn", args=[sys.executable, "-c", stubborn], env=dict(os.environ)
    )
    messages: list[str] = []
    supervisor = serve_command.Supervisor([child], write=messages.append)
    supervisor.start()
    deadline = time.monotonic() + 10
    while len(psutil.Process(child.pid).children()) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = [psutil.Process(child.pid), *psutil.Process(child.pid).children()]

    started = time.monotonic()
    supervisor.stop()

    assert time.monotonic() - started < 5
    assert any("stubborn" in message and "killing" in message for message in messages)
    time.sleep(0.3)
    assert still_alive(tree) == []
