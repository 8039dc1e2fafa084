"""Request body limits, checked before anything reads the body.

Django enforces ``DATA_UPLOAD_MAX_MEMORY_SIZE`` only where ``request.body`` or form
parsing reads it; DRF's JSON parser reads the stream directly. This middleware refuses,
from the ``Content-Length`` header, any body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, except
multipart uploads, which may reach ``HPO_UPLOAD_MAX_BYTES``: a 413 with a JSON message that
names the limit.
"""
from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB" if size >= 1024 * 1024 else f"{size / 1024:.0f} KiB"


class BodySizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"detail": "Content-Length is not a number."}, status=400)
        multipart = request.META.get("CONTENT_TYPE", "").startswith("multipart/form-data")
        limit = settings.HPO_UPLOAD_MAX_BYTES if multipart else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            what = "An upload" if multipart else "A request body"
            return JsonResponse(
                {"detail": f"{what} may be at most {_megabytes(limit)}; this one is {_megabytes(length)}."},
                status=413,
            )
        return self.get_response(request)
