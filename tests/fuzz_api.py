"""Fuzz the REST API with schemathesis, as a logged-in member: `make fuzz`.

    .venv/bin/python tests/fuzz_api.py [--max-examples 25] [--postgres URL]

Sets up a fresh database (SQLite in a temporary folder unless --postgres names a server),
makes a workspace where the fuzzing user is a *member* (with an owner beside them), a
finished study with trials, a draft study and an upload-free setup, starts the real ASGI
app under daphne on a free loopback port, and runs `schemathesis run` against
`/api/schema/` with the member's API token. Checks: no 5xx (`not_a_server_error`), every
answer's status, content type and body match the schema. Prints schemathesis' summary and
one line: operations, test cases, failures. Exits non-zero on any failure.

Not part of `make test` (it takes minutes); run it after changing the API.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


SETUP = r"""
import optuna
from django.contrib.auth import get_user_model
from accounts.models import Role
from accounts.services import membership_add, token_create, workspace_create
from studies.optuna_storage import storage_for_study
from studies.services import study_create

User = get_user_model()
owner = User.objects.create_user("fuzz-owner", password="fuzz-owner-password")
member = User.objects.create_user("fuzz-member", password="fuzz-member-password")
workspace = workspace_create(owner=owner, name="Fuzz team")
membership_add(actor=owner, workspace=workspace, user=member, role=Role.MEMBER)
done = study_create(user=member, workspace=workspace, name="finished", n_trials=4, max_epochs=2, seed=0)
study = optuna.load_study(study_name=done.optuna_name, storage=storage_for_study(done))
for i in range(4):
    trial = study.ask()
    lr = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
    trial.suggest_int("conv_blocks", 1, 3)
    trial.report(0.5 + i / 10, 1)
    study.tell(trial, 0.6 + lr)
study_create(user=member, workspace=workspace, name="draft", n_trials=3)
_token, key = token_create(user=member, name="fuzz")
print("KEY=" + key)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=25, help="test cases per operation and phase")
    parser.add_argument("--postgres", default="", help="a PostgreSQL server URL (the run makes database hpo_fuzz)")
    parser.add_argument("--workers", default="1", help="schemathesis workers")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hpo-fuzz-"))
    if args.postgres:
        import psycopg

        with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "hpo_fuzz" WITH (FORCE)')
            conn.execute('CREATE DATABASE "hpo_fuzz"')
        database_url = f"{args.postgres}/hpo_fuzz"
    else:
        database_url = f"sqlite:///{folder}/fuzz.sqlite3"
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        HPO_VAR_DIR=str(folder),
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # The fuzzer logs in hundreds of times a minute; throttling is tested in the suite.
        HPO_LOGIN_RATE="100000/min",
        HPO_TOKEN_RATE="100000/min",
        HPO_LOGIN_LOCKOUT_FAILURES="1000000",
    )
    env.pop("REDIS_URL", None)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    made = subprocess.run([*manage, "shell", "-c", SETUP], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    key = re.search(r"KEY=(\S+)", made.stdout).group(1)  # type: ignore[union-attr]
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "hpo_platform.asgi:application"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=open(folder / "daphne.log", "wb"),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/schema/", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    print((folder / "daphne.log").read_text(), file=sys.stderr)
                    return 2
                time.sleep(0.5)
        command = [
            str(Path(sys.executable).with_name("schemathesis")), "run", f"http://127.0.0.1:{port}/api/schema/",
            "--url", f"http://127.0.0.1:{port}",
            "-H", f"Authorization: Token {key}",
            "--checks", CHECKS,
            # Would revoke the fuzzer's own token or take the member out of the workspace
            # (both are allowed to a member), leaving the rest of the run with 401s and 404s.
            # The suite tests both.
            "--exclude-name", "DELETE /api/v1/tokens/{token_id}/",
            "--exclude-name", "DELETE /api/v1/workspaces/{slug}/members/{membership_id}/",
            "--exclude-name", "POST /api/v1/auth/logout/",
            "--max-examples", str(args.max_examples),
            "--workers", args.workers,
            "--seed", "1",
            "--no-color",
        ]
        # In the temporary folder: schemathesis keeps its example database under the cwd.
        fuzz = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        output = fuzz.stdout + fuzz.stderr
        print(output)
        print(f"daphne log: {folder / 'daphne.log'}")
        return fuzz.returncode
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
