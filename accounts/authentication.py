"""API token authentication for scripts: ``Authorization: Token <key>`` (or ``Bearer``).

Keys are 40+ random URL-safe characters made by ``accounts.services.token_create``; the
database keeps only their SHA-256, so a leaked database leaks no usable key.
"""
from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accounts.models import ApiToken

KEYWORDS = ("token", "bearer")
LAST_USED_RESOLUTION = timedelta(minutes=1)  # at most one write a minute per token


def hash_key(key: str) -> str:
    """The SHA-256 stored for a secret shown once: API token keys and invitation tokens."""
    return hashlib.sha256(key.encode()).hexdigest()


def user_for_key(key: str) -> tuple[Any, ApiToken] | None:
    """The active user a key belongs to, and its token; ``None`` for an unknown or revoked
    key or an inactive user. Shared by the API and the websocket."""
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user, token


class ApiTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Any) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower().decode(errors="replace") not in KEYWORDS:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send the header as 'Authorization: Token <key>', one key, no spaces.")
        try:
            key = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The token has characters a key never has.") from None
        found = user_for_key(key)
        if found is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked token.")
        return found

    def authenticate_header(self, request: Any) -> str:
        return 'Token realm="api"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "An API token made under /api/v1/tokens/, sent as `Token <key>`.",
        }
