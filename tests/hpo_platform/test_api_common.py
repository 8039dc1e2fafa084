"""What every API answer shares: /healthz, the schema and docs, JSON errors, body limits."""
from __future__ import annotations

import json
import re
from typing import Any, Callable

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_broker_and_channel_layer_without_login() -> None:
    answer = Client(HTTP_HOST="localhost").get("/healthz")
    assert answer.status_code == 200
    body = answer.json()
    assert body["ok"] is True
    assert set(body["checks"]) == {"database", "broker", "channel_layer"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["database"]["vendor"] in {"postgresql", "sqlite"}
    assert body["checks"]["broker"]["kind"] == "ORM"


def test_healthz_is_503_and_names_a_channel_layer_that_does_not_answer(settings: Any) -> None:
    from channels.layers import channel_layers

    # A Redis layer on a port nothing listens on.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    channel_layers.backends.clear()
    try:
        answer = Client(HTTP_HOST="localhost").get("/healthz")
    finally:
        channel_layers.backends.clear()
    assert answer.status_code == 503
    body = answer.json()
    assert body["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["channel_layer"]["ok"] is False
    assert body["checks"]["channel_layer"]["error"]


def test_healthz_through_redis_when_it_is_configured(settings: Any) -> None:
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:6379/3"]}}
    }
    channel_layers.backends.clear()
    try:
        body = Client(HTTP_HOST="localhost").get("/healthz").json()
    finally:
        channel_layers.backends.clear()
    assert body["checks"]["channel_layer"] == {**body["checks"]["channel_layer"], "ok": True, "cross_process": True}


def test_the_schema_is_openapi_3_and_documents_the_api(api_client: Callable[[Any], Any], member: Any) -> None:
    answer = api_client(member).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert answer.status_code == 200
    schema = json.loads(answer.content)
    assert schema["openapi"].startswith("3.")
    assert all(path.startswith("/api/v1/") for path in schema["paths"])
    # Every operation documents its error answers (one shape for all of them).
    for operations in schema["paths"].values():
        for method, operation in operations.items():
            if method in {"get", "post", "patch", "delete", "put"}:
                assert {"401", "403", "404"} <= set(operation["responses"]), (method, operation.get("operationId"))
    assert "tokenAuth" in schema["components"]["securitySchemes"]


def test_the_docs_page_needs_no_internet(api_client: Callable[[Any], Any], member: Any) -> None:
    page = api_client(member).get("/api/docs/").content.decode()
    assert "swagger" in page.lower()
    external = [url for url in re.findall(r"""(?:src|href)=["']([^"']+)""", page) if url.startswith(("http:", "https:", "//"))]
    assert external == []


def test_an_unknown_api_address_is_a_json_404_that_points_at_the_schema(api_client: Callable[[Any], Any], member: Any) -> None:
    for method, path in (("get", "/api/v1/no/such/thing/"), ("post", "/api/v1/x"), ("delete", "/api/v1/workspaces/a%0Ab/members/")):
        answer = getattr(api_client(member), method)(path)
        assert answer.status_code == 404
        assert answer["Content-Type"] == "application/json"
        assert "/api/schema/" in answer.json()["detail"]


def test_anonymous_requests_are_refused(api_client: Callable[[Any], Any]) -> None:
    answer = api_client(None).get("/api/v1/studies/")
    assert answer.status_code in (401, 403)
    assert "detail" in answer.json()


def test_an_oversized_body_is_refused_and_nothing_is_stored(
    api_client: Callable[[Any], Any], member: Any, workspace: Any, settings: Any
) -> None:
    from studies.models import Study

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    body = {"workspace": workspace.slug, "name": "big", "search_space": {"x": "y" * 5000}}
    answer = api_client(member).post("/api/v1/studies/", body, format="json")
    assert answer.status_code == 413
    assert "at most 2 KiB" in answer.json()["detail"]
    assert not Study.objects.filter(name="big").exists()
