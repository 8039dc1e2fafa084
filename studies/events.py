"""Study events: one versioned schema, published to the study's channel-layer group.

Every event is a JSON object ``{"type", "version", "study_id", "at", ...}``; the types and
their fields are listed in ``docs/events.md``. ``publish`` sends it to the group
``study-<id>`` after the surrounding transaction commits (nothing leaves for a rolled-back
write). With channels-redis (``REDIS_URL`` set) every process's events reach every
consumer; with the embedded default's in-memory layer they stay in the process, and pages
fall back to the stored progress snapshot.
"""
from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

EVENT_VERSION = 1
EVENT_TYPES = (
    "study.status",
    "study.progress",
    "trial.queued",
    "trial.started",
    "trial.epoch",
    "trial.progress",
    "trial.finished",
    "study.finished",
)


def group_name(study_id: int) -> str:
    return f"study-{study_id}"


def make_event(study_id: int, kind: str, **payload: Any) -> dict[str, Any]:
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind!r}; known: {', '.join(EVENT_TYPES)}")
    return {"type": kind, "version": EVENT_VERSION, "study_id": study_id, "at": timezone.now().isoformat(), **payload}


def publish(study_id: int, kind: str, **payload: Any) -> dict[str, Any]:
    """Build the event and send it to the study's group once the transaction commits.
    Never raises: a lost event must not fail a trial (the snapshot has the truth)."""
    event = make_event(study_id, kind, **payload)

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(group_name(study_id), {"type": "study.event", "event": event})
        except Exception:
            logger.exception("could not publish %s for study %s", kind, study_id)

    transaction.on_commit(send)
    return event
