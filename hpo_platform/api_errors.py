"""One DRF exception handler that turns domain errors into HTTP answers.

``ValidationError`` is a 400 naming the field, ``PermissionDenied`` a 403, ``NotFound`` a
404 (also used for another workspace's objects, so their existence is never confirmed).
"""
from __future__ import annotations

from typing import Any

from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.errors import ApplicationError, NotFound, PermissionDenied, ValidationError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ValidationError):
        detail: Any = {exc.field: [exc.message]} if exc.field else [exc.message]
        exc = drf_exceptions.ValidationError(detail)
    elif isinstance(exc, NotFound):
        exc = drf_exceptions.NotFound(exc.message)
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied(exc.message)
    elif isinstance(exc, ApplicationError):
        exc = drf_exceptions.ValidationError([exc.message])
    return drf_exception_handler(exc, context)
