"""/api/v1/: each app's API routes (``<app>/api.py`` holds the views, ``<app>/api_urls.py``
the routes), then a JSON 404 for every other address under /api/v1/ (Django's own 404 is
an HTML page)."""
from django.urls import include, path, re_path
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response


@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([])
def not_found(request: Request, rest: str = "") -> Response:
    raise NotFound(f"No API endpoint at {request.path}; the endpoints are listed at /api/schema/ and /api/docs/.")


not_found.cls.schema = None  # type: ignore[attr-defined]  # not part of the documented API

urlpatterns = [
    path("", include("accounts.api_urls")),
    path("", include("studies.api_urls")),
    path("", include("trials.api_urls")),
    re_path(r"^(?P<rest>[\s\S]*)$", not_found),  # any character, newlines too
]
