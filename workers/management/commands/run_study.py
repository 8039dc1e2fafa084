"""``manage.py run_study``: create a study and run it to its end, on this machine or, with
``--queue``, on the cluster's ``qcluster`` workers (followed from here).

    manage.py run_study --dataset digits --trials 10 --max-epochs 10 --json
    manage.py run_study --queue --trials 24 --concurrency 4

Shows live progress (trials done, running, pruned, failed; the best so far; each running
trial's epoch and batch progress; the ETA), then a table of the best trial. With ``--json``
the progress goes to stderr and the last line on stdout is one JSON summary. Exit codes: 0
completed, 1 failed, 2 bad input, 130 cancelled (Ctrl+C: running trials stop, completed ones
stay, the study ends cancelled).
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.errors import ApplicationError
from accounts.models import Membership, Role, Workspace
from studies.models import FINAL_STATUSES, Mode, Pruner, Status, Study
from studies.progress import compute_progress
from studies.services import study_cancel, study_create, study_start
from trials.models import Trial
from workers.engine.catalog import DATASETS
from workers.engine.search_space import SearchSpaceError, parse_cli_override
from workers.runner import StudyRunner

EXIT_CODES = {Status.COMPLETED: 0, Status.FAILED: 1, Status.CANCELLED: 130}


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressDisplay:
    """Prints a study's progress snapshot every ``every`` seconds (a line each; a TTY
    redraws one line). The same display whether the trials run here or on the cluster."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], stream: TextIO, every: float) -> None:
        self.snapshot, self.stream, self.every = snapshot, stream, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._tty = stream.isatty()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop, after one last line with the final counts."""
        self._stop.set()
        self._thread.join()
        self._write(self.line())
        if self._tty:
            self.stream.write("\n")

    def _write(self, text: str) -> None:
        self.stream.write(f"\r\x1b[2K{text}" if self._tty else f"{text}\n")
        self.stream.flush()

    def line(self) -> str:
        snap = self.snapshot()
        running = " ".join(
            f"#{t['number']}:e{t.get('epoch', 0)}/{t.get('epochs', '?')}:{int(t.get('fraction', 0) * 100)}%"
            for t in snap["running_trials"]
        )
        best = snap["best_value"]
        best_text = f"best {best:.4f} (#{snap['best_trial']})" if best is not None else "best -"
        return (
            f"trials {snap['finished']}/{snap['n_trials']} | complete {snap['complete']} pruned {snap['pruned']} "
            f"failed {snap['failed']} running {snap['running']} | {best_text} | "
            f"avg {_fmt_seconds(snap['average_trial_s'])} ETA {_fmt_seconds(snap['eta_s'])}"
            + (f" | {running}" if running else "")
        )

    def _loop(self) -> None:
        from django.db import connections

        try:
            while not self._stop.wait(self.every):
                self._write(self.line())
        finally:
            connections.close_all()


class Command(BaseCommand):
    help = "Create a study and run it to its end on this machine, with live progress."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", default="demo", help="Workspace slug (default: demo).")
        parser.add_argument("--user", help="Who starts it (default: the workspace's first owner).")
        parser.add_argument("--name", help="Study name (default: <dataset>-<timestamp>).")
        parser.add_argument("--dataset", default="digits", help=f"One of: {', '.join(DATASETS)}.")
        parser.add_argument("--mode", default=Mode.SIMPLE, help="simple (accuracy) or health.")
        parser.add_argument("--trials", type=int, default=10, help="Trial budget (default 10).")
        parser.add_argument("--max-epochs", type=int, default=10, help="Most epochs a trial trains (default 10).")
        parser.add_argument("--concurrency", type=int, default=1, help="Trials at once (default 1).")
        parser.add_argument("--sample-fraction", type=float, default=1.0, help="Share of the data to train on.")
        parser.add_argument("--pruner", default=Pruner.NONE, help="none, median or hyperband.")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the sampler, the data split and the weights.")
        parser.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="PARAM=VALUE",
            help="Fix a parameter (repeatable), e.g. --set optimizer=adam.",
        )
        parser.add_argument(
            "--queue", action="store_true",
            help="Submit to the cluster's qcluster workers and follow it, instead of training here.",
        )
        parser.add_argument("--json", action="store_true", help="Progress to stderr; a JSON summary as the last stdout line.")
        parser.add_argument("--progress-every", type=float, default=1.0, help="Seconds between progress lines.")

    def handle(self, *args: Any, **options: Any) -> None:
        study = self._create(options)
        stream = sys.stderr if options["json"] else self.stdout._out  # type: ignore[attr-defined]
        started = time.perf_counter()
        if options["queue"]:
            study = self._follow_on_cluster(study, stream, options["progress_every"])
        else:
            study = self._run_here(study, stream, options["progress_every"])
        summary = self._summary(study, time.perf_counter() - started)
        if options["json"]:
            self.stdout.write(json.dumps(summary))
        else:
            self._print_table(summary)
        code = EXIT_CODES.get(study.status, 1)
        if code:
            sys.exit(code)

    def _run_here(self, study: Study, stream: TextIO, every: float) -> Study:
        runner = StudyRunner(study)
        display = ProgressDisplay(runner.snapshot, stream, every)
        previous = signal.signal(signal.SIGINT, lambda *_: self._interrupt(runner.cancel, runner.cancelled, stream))
        try:
            stream.write(
                f"Study {study.pk} {study.name!r} in {study.workspace}: {study.n_trials} trials on "
                f"{study.dataset} ({study.task_kind}), mode {study.mode}, {len(runner.slots)} slot(s) here.\n"
            )
            display.start()
            return runner.run()
        finally:
            display.stop()
            signal.signal(signal.SIGINT, previous)

    def _follow_on_cluster(self, study: Study, stream: TextIO, every: float) -> Study:
        """Queue the study for the qcluster workers, then follow it until it ends."""
        user = study.created_by
        study = study_start(user=user, study=study)
        cancel_asked = threading.Event()

        def cancel() -> None:
            cancel_asked.set()

        display = ProgressDisplay(lambda: compute_progress(Study.objects.get(pk=study.pk)), stream, every)
        previous = signal.signal(signal.SIGINT, lambda *_: self._interrupt(cancel, cancel_asked.is_set(), stream))
        stream.write(
            f"Study {study.pk} {study.name!r} queued for the cluster: {study.n_trials} trials on {study.dataset}; "
            "start `manage.py qcluster` on a machine if none runs.\n"
        )
        try:
            display.start()
            while True:
                study.refresh_from_db()
                if study.status in FINAL_STATUSES:
                    return study
                if cancel_asked.is_set() and study.status in (Status.QUEUED, Status.RUNNING):
                    study = study_cancel(user=user, study=study, reason="Cancelled from run_study (Ctrl+C).")
                time.sleep(0.2)
        finally:
            display.stop()
            signal.signal(signal.SIGINT, previous)

    def _interrupt(self, cancel: Callable[[], None], already: bool, stream: TextIO) -> None:
        if already:
            stream.write("\nStill stopping the running trials; please wait.\n")
            return
        stream.write("\nCancelling: running trials stop, completed trials are kept.\n")
        cancel()

    def _fail(self, message: str) -> None:
        raise CommandError(message, returncode=2)

    def _create(self, options: dict[str, Any]) -> Study:
        workspace = Workspace.objects.filter(slug=options["workspace"]).first()
        if workspace is None:
            known = ", ".join(Workspace.objects.values_list("slug", flat=True)[:20]) or "none"
            self._fail(
                f"No workspace {options['workspace']!r}. Known: {known}. "
                "(`manage.py bootstrap_demo` makes the demo workspace.)"
            )
        user = self._user(workspace, options["user"])
        dataset = options["dataset"]
        if dataset not in DATASETS:
            self._fail(f"Unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}.")
        overrides = {}
        for text in options["overrides"]:
            try:
                name, value = parse_cli_override(DATASETS[dataset].kind, text, max_epochs=options["max_epochs"])
            except SearchSpaceError as error:
                self._fail(f"--set {text}: {error}")
            overrides[name] = value
        name = options["name"] or f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            return study_create(
                user=user,
                workspace=workspace,
                name=name,
                dataset=dataset,
                mode=options["mode"],
                n_trials=options["trials"],
                max_epochs=options["max_epochs"],
                concurrency=options["concurrency"],
                sample_fraction=options["sample_fraction"],
                pruner=options["pruner"],
                seed=options["seed"],
                search_space=overrides,
            )
        except ApplicationError as error:
            flag = f"--{error.field.replace('_', '-')}" if error.field else "input"
            self._fail(f"{flag}: {error.message}")
        raise AssertionError("unreachable")

    def _user(self, workspace: Workspace, username: str | None) -> Any:
        if username:
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                self._fail(f"No user {username!r}.")
            return user
        membership = (
            Membership.objects.filter(workspace=workspace, role=Role.OWNER).select_related("user").order_by("pk").first()
        )
        if membership is None:
            self._fail(f"Workspace {workspace.slug!r} has no owner to run the study as; pass --user.")
        return membership.user

    def _summary(self, study: Study, duration: float) -> dict[str, Any]:
        trials = Trial.objects.filter(study=study)
        best = trials.filter(state="COMPLETE").order_by("-value").first()
        from studies.optuna_storage import DjangoStorage

        best_params = DjangoStorage().get_trial(best.pk).params if best else None
        return {
            "study_id": study.pk,
            "status": study.status,
            "reason": study.status_reason,
            "n_trials": trials.count(),
            "n_complete": trials.filter(state="COMPLETE").count(),
            "n_pruned": trials.filter(state="PRUNED").count(),
            "n_failed": trials.filter(state="FAIL").count(),
            "best_trial": best.number if best else None,
            "best_value": best.value if best else None,
            "best_accuracy": best.accuracy if best else None,
            "best_health": best.health_score if best else None,
            "best_params": best_params,
            "best_model_path": (best.artifacts or {}).get("model") if best else None,
            "duration_s": round(duration, 2),
        }

    def _print_table(self, summary: dict[str, Any]) -> None:
        write = self.stdout.write
        write(
            f"Study {summary['study_id']} {summary['status']}"
            + (f" ({summary['reason']})" if summary["reason"] else "")
            + f" in {summary['duration_s']:.1f} s: {summary['n_complete']} complete, "
            f"{summary['n_pruned']} pruned, {summary['n_failed']} failed."
        )
        if summary["best_trial"] is None:
            write("No trial completed.")
            return
        rows = [
            ("best trial", f"#{summary['best_trial']}"),
            ("value", f"{summary['best_value']:.4f}"),
            ("validation accuracy", f"{summary['best_accuracy']:.4f}"),
            ("health score", "-" if summary["best_health"] is None else f"{summary['best_health']:.3f}"),
            *((f"  {name}", str(value)) for name, value in (summary["best_params"] or {}).items()),
            ("model", summary["best_model_path"] or "-"),
        ]
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            write(f"{label:<{width}}  {value}")
