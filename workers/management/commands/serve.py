"""``manage.py serve``: the web server and a task worker from one command.

It starts two children with this interpreter, daphne serving ``hpo_platform.asgi`` and
``manage.py qcluster``, and supervises them:

* SIGINT, SIGTERM or SIGHUP stop both: each gets one SIGTERM (their graceful stop), and
  whatever still runs ``STOP_TIMEOUT`` seconds later is killed; then serve exits 0. A second
  signal while stopping kills at once.
* If a child dies on its own, serve stops the other one and exits 1 with a message that
  names the one that died (a web server without workers, or workers without a web server,
  would look alive and do nothing useful).

Each child runs in its own process group. A Ctrl+C in a terminal signals the whole
foreground group; keeping the children out of it means they are stopped once, in order, by
this supervisor, rather than each racing the terminal's SIGINT against our SIGTERM. Their
own group also lets a hard kill reach everything under them (the qcluster's sentinel, its
workers and their trial processes), not just the process we started.

The number of qcluster workers comes from ``Q_WORKERS`` (read by settings);
``--workers N`` sets it for the qcluster child only.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Callable

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Child:
    """One supervised process; ``name`` is what messages call it."""

    name: str
    args: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=settings.BASE_DIR,
            stdin=subprocess.DEVNULL,
            process_group=0,  # see the module docstring
        )

    def poll(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        """Signal every process left in the child's group; nothing happens if none is."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class Supervisor:
    """Runs the children until a stop signal or until one of them dies.

    Not thread-safe: signal handlers only record the signal, and all the work happens in
    ``run`` on the main thread.
    """

    def __init__(self, children: list[Child], write: Callable[[str], Any]) -> None:
        self.children = children
        self.write = write
        self.signals_received: list[int] = []

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals_received.append(signum)

    def install_signal_handlers(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def start(self) -> None:
        for child in self.children:
            child.start()

    def run(self) -> str | None:
        """Wait; return ``None`` after a requested stop, or a message naming the child
        that died unexpectedly. Every child has stopped when this returns."""
        failure = None
        while not self.signals_received and failure is None:
            failure = self._first_death()
            if failure is None:
                time.sleep(POLL_INTERVAL)
        if failure is None:
            name = signal.Signals(self.signals_received[0]).name
            self.write(f"Got {name}: stopping {self._names(self._running())}.")
        else:
            self.write(f"{failure}; stopping {self._names(self._running())}.")
        self.stop()
        return failure

    def _first_death(self) -> str | None:
        for child in self.children:
            returncode = child.poll()
            if returncode is not None:
                return (
                    f"{child.name} (pid {child.pid}) exited unexpectedly with "
                    f"{describe_exit(returncode)}"
                )
        return None

    def stop(self) -> None:
        """SIGTERM every running child, wait up to STOP_TIMEOUT, then kill what is left."""
        for child in self._running():
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        signals_before = len(self.signals_received)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self._running() and time.monotonic() < deadline:
            if len(self.signals_received) > signals_before:
                self.write("Second signal: killing now.")
                break
            time.sleep(0.1)
        for child in self._running():
            self.write(f"{child.name} (pid {child.pid}) did not stop in time; killing it.")
            child.signal_group(signal.SIGKILL)
            assert child.process is not None
            child.process.wait()
        # A child that exited may leave processes behind in its group (a qcluster killed
        # hard leaves its sentinel and workers): nothing of ours may outlive serve.
        for child in self.children:
            child.signal_group(signal.SIGKILL)

    def _running(self) -> list[Child]:
        return [child for child in self.children if child.is_running()]

    @staticmethod
    def _names(children: list[Child]) -> str:
        return " and ".join(child.name for child in children) or "nothing"


def web_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def database_description() -> str:
    database = settings.DATABASES["default"]
    engine = str(database["ENGINE"]).rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"SQLite {database['NAME']}"
    return f"{engine} {database['NAME']} on {database.get('HOST') or 'localhost'}:{database.get('PORT') or ''}"


class Command(BaseCommand):
    help = (
        "Run the web server (daphne) and a task worker (qcluster) together; "
        "Ctrl+C stops both."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address daphne binds (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port daphne listens on (default 8000).")
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="qcluster worker processes (default: Q_WORKERS, else 1).",
        )

    def handle(self, *args: Any, host: str, port: int, workers: int | None, **options: Any) -> None:
        if not 0 < port < 65536:
            raise CommandError(f"--port {port} is not a port; use 1 to 65535.")
        if workers is not None and workers < 1:
            raise CommandError(f"--workers {workers} is too few; use 1 or more.")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.setdefault("DJANGO_SETTINGS_MODULE", "hpo_platform.settings")
        qcluster_env = dict(env, Q_WORKERS=str(workers)) if workers else env
        worker_count = workers or settings.Q_CLUSTER["workers"]
        children = [
            Child(
                name="daphne",
                args=[sys.executable, "-m", "daphne", "-b", host, "-p", str(port),
                      "hpo_platform.asgi:application"],
                env=env,
            ),
            Child(
                name="qcluster",
                args=[sys.executable, str(settings.BASE_DIR / "manage.py"), "qcluster"],
                env=qcluster_env,
            ),
        ]
        supervisor = Supervisor(children, write=self._say)
        supervisor.install_signal_handlers()
        supervisor.start()
        daphne, qcluster = children
        url = web_url(host, port)
        self._say(
            "Serving the HPO platform:\n"
            f"  web server  daphne   pid {daphne.pid}  {url}  (admin: {url}admin/)\n"
            f"  task worker qcluster pid {qcluster.pid}  {worker_count} worker process(es), "
            f"{settings.Q_BROKER} broker\n"
            f"  database    {database_description()}\n"
            "Press Ctrl+C to stop both."
        )
        failure = supervisor.run()
        if failure is not None:
            raise CommandError(f"{failure}; stopped the rest.", returncode=1)
        self._say("Stopped.")

    def _say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()
