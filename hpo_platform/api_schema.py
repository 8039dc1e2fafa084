"""OpenAPI post-processing: the error answers every operation can give, documented once.

drf-spectacular documents an operation's success answers; the errors come from one place
(``hpo_platform.api_errors`` and DRF) and have two shapes: ``{"detail": "..."}`` (401, 403,
404, 405, 413, 429) and ``{"<field>": ["..."]}`` (400). This hook adds them to every
operation, so clients (and schemathesis) know every status they can meet.
"""
from __future__ import annotations

from typing import Any

DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
FIELD_ERRORS = {
    "type": "object",
    "description": "Each wrong field (or non_field_errors) with what was wrong and what is allowed.",
    "additionalProperties": {
        "oneOf": [
            {"type": "array", "items": {}},
            {"type": "object"},
            {"type": "string"},
        ]
    },
}
ERRORS = {
    "400": ("Bad input: each field named with the rule it broke.", "FieldErrors"),
    "401": ("Not authenticated (no session, no valid token).", "ErrorDetail"),
    "403": ("Authenticated, but the role does not allow it (or CSRF failed).", "ErrorDetail"),
    "404": ("No such object, or one in a workspace you do not belong to.", "ErrorDetail"),
    "405": ("Method not allowed here.", "ErrorDetail"),
    "415": ("Unsupported media type.", "ErrorDetail"),
    "429": ("Throttled or locked out: try again later (Retry-After).", "ErrorDetail"),
}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorDetail", DETAIL)
    schemas.setdefault("FieldErrors", FIELD_ERRORS)
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for status, (description, schema) in ERRORS.items():
                if status == "400" and method == "get" and not operation.get("parameters"):
                    continue
                responses.setdefault(
                    status,
                    {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}},
                )
    return result
