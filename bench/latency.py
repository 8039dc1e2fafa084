"""Event latency: a worker process publishes `trial.epoch` events, a websocket client
receives them through Redis (channels-redis) and the real ASGI app served by daphne.

    .venv/bin/python bench/latency.py [--events 1000] [--interval 0.005]

Uses a fresh PostgreSQL database (`hpo_bench_latency` on BENCH_POSTGRES, default
postgres://postgres@127.0.0.1:5432) and Redis db 4 on 127.0.0.1. Each event carries the
publisher's clock (same machine); prints p50, p95 and the maximum of receive time minus
send time (target: p95 under 100 ms).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PUBLISHER = r"""
import os, sys, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hpo_platform.settings")
django.setup()
from studies.events import publish
study_id, events, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
time.sleep(1.0)  # the client is listening
for i in range(events):
    publish(study_id, "trial.epoch", trial=0, epoch=i, epochs=events, metrics={}, sent_at=time.time())
    time.sleep(interval)
"""


def fresh_database(server: str) -> str:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "hpo_bench_latency" WITH (FORCE)')
        conn.execute('CREATE DATABASE "hpo_bench_latency"')
    return f"{server}/hpo_bench_latency"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(env: dict[str, str]) -> tuple[int, str]:
    """Migrate, make the demo user and a study; return the study id and a session cookie."""
    for command in (["migrate", "--noinput"], ["bootstrap_demo"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hpo_platform.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.models import Workspace
    from studies.services import study_create

    user = get_user_model().objects.get(username="demo")
    study = study_create(user=user, workspace=Workspace.objects.get(slug="demo"), name="latency")
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return study.pk, str(session.session_key)


async def receive(url: str, cookie: str, events: int) -> list[float]:
    import websockets

    latencies: list[float] = []
    headers = {"Origin": "http://127.0.0.1", "Cookie": f"sessionid={cookie}"}
    async with websockets.connect(url, additional_headers=headers) as socket_:
        snapshot = json.loads(await socket_.recv())
        assert snapshot["type"] == "study.snapshot", snapshot
        while len(latencies) < events:
            event = json.loads(await asyncio.wait_for(socket_.recv(), timeout=30))
            if event["type"] == "trial.epoch":
                latencies.append(time.time() - event["sent_at"])
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between events")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = dict(
            os.environ,
            DATABASE_URL=fresh_database(args.postgres),
            REDIS_URL="redis://127.0.0.1:6379/4",
            HPO_VAR_DIR=folder,
            LOG_LEVEL="WARNING",
            ALLOWED_HOSTS="127.0.0.1,localhost",
        )
        study_id, cookie = prepare(env)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "hpo_platform.asgi:application"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            publisher = subprocess.Popen(
                [sys.executable, "-c", PUBLISHER, str(study_id), str(args.events), str(args.interval)],
                cwd=ROOT, env=env,
            )
            latencies = asyncio.run(receive(f"ws://127.0.0.1:{port}/ws/studies/{study_id}/", cookie, args.events))
            publisher.wait(timeout=60)
        finally:
            server.terminate()
            server.wait(timeout=10)
    ms = sorted(1000 * value for value in latencies)
    p95 = ms[int(0.95 * (len(ms) - 1))]
    print(f"{len(ms)} trial.epoch events, worker process -> Redis -> daphne -> websocket client")
    print(f"  p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms (target: p95 under 100 ms)")


if __name__ == "__main__":
    main()
