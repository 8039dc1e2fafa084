"""API-token authentication for websockets: ``?token=<key>`` in the URL (what a browser can
send) or an ``Authorization: Token <key>`` header (``Bearer`` too; what scripts send).

Sits inside channels' ``AuthMiddlewareStack``: with no token the session's user stays in
``scope["user"]``; with a valid token its user replaces it; with an unknown or revoked
token the user is anonymous, so the consumer refuses the socket as not signed in (4401),
whatever session came along.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser

from accounts.authentication import KEYWORDS, user_for_key


def token_from_scope(scope: dict[str, Any]) -> str | None:
    """The key sent with the handshake, or ``None`` when none was sent. A malformed
    Authorization header counts as a key ("" , which matches no token)."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("token"):
        return query["token"][0]
    for name, value in scope.get("headers", []):
        if name.lower() != b"authorization":
            continue
        parts = value.decode("latin-1").split()
        if parts and parts[0].lower() in KEYWORDS:
            return parts[1] if len(parts) == 2 else ""
    return None


@database_sync_to_async
def _user_for(key: str) -> Any:
    found = user_for_key(key) if key else None
    return found[0] if found is not None else AnonymousUser()


class TokenAuthMiddleware(BaseMiddleware):
    """Sets ``scope["user"]`` from an API token when the handshake carries one."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = token_from_scope(scope)
        if key is not None:
            scope = dict(scope, user=await _user_for(key))
        return await super().__call__(scope, receive, send)
