"""The study websocket: ``/ws/studies/<id>/``.

No business logic: authenticate (the session, or an API token: ``accounts.ws_auth``),
check workspace access (another workspace's study is refused as not found), join the
study's group, send the current snapshot first, then forward each event as it comes.
Without a channel layer that crosses processes (the embedded default's in-memory layer) it
polls the stored snapshot instead and sends it when it changes, at most ``POLL_SECONDS``
late.

Close codes: 4401 not signed in (or an unknown or revoked token), 4404 no such study in a
workspace of yours.
"""
from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer

from accounts.errors import NotFound
from studies.events import EVENT_VERSION, group_name
from studies.models import Study
from studies.selectors import study_get

POLL_SECONDS = 0.5
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _visible_study(user: Any, study_id: int) -> Study | None:
    try:
        return study_get(user=user, study_id=study_id)
    except NotFound:
        return None


@database_sync_to_async
def _snapshot(study_id: int) -> dict[str, Any]:
    return dict(Study.objects.values_list("progress", flat=True).get(pk=study_id) or {})


class StudyConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        study = await _visible_study(user, int(self.scope["url_route"]["kwargs"]["study_id"]))
        if study is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.study_id = study.pk
        self.group = group_name(study.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.last_snapshot = await _snapshot(self.study_id)
        await self.send_json(self._snapshot_event(self.last_snapshot))
        self.poller = None
        if isinstance(self.channel_layer, InMemoryChannelLayer):
            self.poller = asyncio.ensure_future(self._poll())

    def _snapshot_event(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        return {"type": "study.snapshot", "version": EVENT_VERSION, "study_id": self.study_id, "progress": snapshot}

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            snapshot = await _snapshot(self.study_id)
            if snapshot != self.last_snapshot:
                self.last_snapshot = snapshot
                await self.send_json(self._snapshot_event(snapshot))

    async def disconnect(self, code: int) -> None:
        if getattr(self, "poller", None) is not None:
            self.poller.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def study_event(self, message: dict[str, Any]) -> None:
        """An event published to the study's group: forward it as it is."""
        await self.send_json(message["event"])

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The socket is one-way; what a client sends is ignored."""
