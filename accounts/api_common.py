"""What every API module shares: pagination, strict input, and the scoping rule.

Scoping: every viewset's queryset comes from a selector that takes ``user=`` (only the
workspaces the user belongs to), so another workspace's object is a 404 for every method,
never a 403 that would confirm it exists. Writes go through the services, which check the
role (viewer < member < admin < owner) and raise domain errors that
``hpo_platform.api_errors`` turns into 400/403/404.
"""
from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import pagination, serializers


class Pagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know (a typo must not be silently ignored)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            known = set(self.fields)
            unknown = sorted(str(key) for key in data if key not in known)
            if unknown:
                writable = sorted(name for name, field in self.fields.items() if not field.read_only)
                raise serializers.ValidationError(
                    {name: [f"Unknown field. Allowed: {', '.join(writable) or 'none'}."] for name in unknown}
                )
        return super().to_internal_value(data)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    pass


def api_url(context: dict[str, Any], name: str, **kwargs: Any) -> str:
    """The URL of the named API route, absolute when the serializer has the request."""
    location = reverse(name, kwargs=kwargs)
    request = context.get("request")
    return request.build_absolute_uri(location) if request is not None else location
