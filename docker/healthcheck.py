"""Container health checks for docker/compose.yaml (the image has no curl).

    python docker/healthcheck.py web [PORT]   GET /healthz on this container's daphne
    python docker/healthcheck.py worker       the database and the task broker answer

``web`` passes when /healthz answers 200 (database, broker and channel layer all up). The
request names a host from ALLOWED_HOSTS (else Django answers 400) and says it came over
HTTPS (``X-Forwarded-Proto``, which the platform trusts when DEBUG is off), so that
SECURE_SSL_REDIRECT does not turn it into a redirect.

``worker`` sets Django up the way ``manage.py qcluster`` does and asks the database for
``SELECT 1`` and django-q2's broker for a ping and its queue size.

Exit status 0 when healthy, 1 otherwise, with the reason on stdout (``docker inspect``
shows it).
"""
from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_PORT = 8000
TIMEOUT_SECONDS = 10


def host_header(allowed_hosts: str | None) -> str:
    """A Host the platform accepts: the first usable ALLOWED_HOSTS entry, else localhost
    (the default while DEBUG is on). ``*`` says nothing, ``.example.com`` means example.com
    and its subdomains."""
    for entry in (allowed_hosts or "").split(","):
        entry = entry.strip()
        if entry.startswith("."):
            entry = entry[1:]
        if entry and entry != "*":
            return entry
    return "localhost"


def check_web(port: int) -> tuple[bool, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/healthz",
        headers={"Host": host_header(os.environ.get("ALLOWED_HOSTS")), "X-Forwarded-Proto": "https"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status == 200, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:  # 503 names the check that failed
        return False, f"HTTP {error.code}: {error.read().decode(errors='replace')[:2000]}"
    except (OSError, urllib.error.URLError) as error:
        return False, f"{type(error).__name__}: {error}"


def check_worker() -> tuple[bool, str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hpo_platform.settings")
    try:
        import django

        django.setup()
        from django.db import connection
        from django_q.brokers import get_broker

        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        broker = get_broker()
        if not broker.ping():
            return False, "the broker did not answer"
        return True, json.dumps({"database": connection.vendor, "broker": broker.info(), "queued": broker.queue_size()})
    except Exception as error:  # a health check reports, it does not raise
        return False, f"{type(error).__name__}: {error}"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"web", "worker"}:
        print(__doc__)
        return 2
    if argv[0] == "web":
        ok, detail = check_web(int(argv[1]) if len(argv) > 1 else DEFAULT_PORT)
    else:
        ok, detail = check_worker()
    print(detail)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
