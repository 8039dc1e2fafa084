"""The ASGI application daphne serves: pages, and static files while DEBUG is on."""
from __future__ import annotations

import importlib
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator


def _get(app: Any, path: str) -> int:
    """The status of GET ``path``, after the whole body was sent (static files stream it,
    ending with a message without ``body``, which HttpCommunicator cannot read)."""

    async def exchange() -> int:
        communicator = HttpCommunicator(app, "GET", path, headers=[(b"host", b"localhost")])
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(timeout=5)
        while True:
            chunk = await communicator.receive_output(timeout=5)
            if not chunk.get("more_body", False):
                return int(start["status"])

    return async_to_sync(exchange)()


def _asgi_app(settings: Any, debug: bool) -> Any:
    settings.DEBUG = debug
    import hpo_platform.asgi

    return importlib.reload(hpo_platform.asgi).application


@pytest.mark.django_db(transaction=True)
def test_static_files_are_served_with_debug_on(settings: Any) -> None:
    app = _asgi_app(settings, debug=True)
    assert _get(app, "/static/admin/css/base.css") == 200
    assert _get(app, "/static/css/site.css") == 200


@pytest.mark.django_db(transaction=True)
def test_static_files_are_left_to_the_proxy_with_debug_off(settings: Any) -> None:
    app = _asgi_app(settings, debug=False)
    assert _get(app, "/static/css/site.css") == 404
    assert _get(app, "/") == 200
