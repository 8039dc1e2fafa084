"""The landing page (signed-in users go to their studies) and ``/healthz``."""
from __future__ import annotations

import time
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("studies:list")
    return render(request, "home.html")


def _check(probe: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = probe()
    except Exception as error:  # a health check reports, it does not raise
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    return {"ok": True, "ms": round(1000 * (time.perf_counter() - started), 1), **(detail or {})}


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _broker() -> dict[str, Any]:
    """django-q2's broker: the queue it reads from answers (ORM: the database table)."""
    from django_q.brokers import get_broker

    broker = get_broker()
    if not broker.ping():
        raise ConnectionError("the broker did not answer")
    return {"kind": type(broker).__name__, "queued": broker.queue_size()}


def _channel_layer() -> dict[str, Any]:
    """A message sent to a fresh channel comes back (through Redis when configured)."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")

    async def round_trip() -> None:
        channel = await layer.new_channel()
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "health.check", "token": token})
        message = await layer.receive(channel)
        if message.get("token") != token:
            raise RuntimeError("the channel layer returned another message")

    async_to_sync(round_trip)()
    return {"kind": type(layer).__name__, "cross_process": not type(layer).__name__.startswith("InMemory")}


def healthz(request: HttpRequest) -> JsonResponse:
    """What the platform needs, each probed now: 200 when all answer, else 503 naming the
    one that did not. No login needed; no data shown."""
    checks = {"database": _check(_database), "broker": _check(_broker), "channel_layer": _check(_channel_layer)}
    ok = all(check["ok"] for check in checks.values())
    return JsonResponse({"ok": ok, "checks": checks, "debug": settings.DEBUG}, status=200 if ok else 503)
