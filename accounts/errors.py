"""Domain errors shared by every app. One DRF handler (hpo_platform.api_errors) maps them."""
from __future__ import annotations


class ApplicationError(Exception):
    """A refusal a user can read: what was wrong and, where it helps, what is allowed."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationError(ApplicationError):
    """Bad input; ``field`` names the input at fault."""


class PermissionDenied(ApplicationError):
    """The actor may see the object but not do this to it."""


class NotFound(ApplicationError):
    """No such object, or one in a workspace the actor does not belong to."""
