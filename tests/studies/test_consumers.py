"""The study websocket through the real ASGI application: who may connect, the snapshot
first, events after, and snapshot polling without a cross-process channel layer.

Each conversation runs in one event loop (``async_to_sync`` around the whole scenario):
the communicator's application lives in the loop it was started in."""
from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from hpo_platform.asgi import application
from studies.events import publish
from studies.models import Study
from studies.services import study_create

pytestmark = pytest.mark.django_db(transaction=True)


def headers_for(user: Any | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


def communicator(study: Study, user: Any | None) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/studies/{study.pk}/", headers=headers_for(user))


def test_outsiders_and_anonymous_users_are_refused(workspace: Any, member: Any, outsider: Any) -> None:
    study = study_create(user=member, workspace=workspace, name="s")
    for user, code in ((outsider, 4404), (None, 4401)):
        socket = communicator(study, user)
        assert async_to_sync(socket.connect)() == (False, code)


def test_a_viewer_gets_the_snapshot_then_each_event(workspace: Any, member: Any, viewer: Any) -> None:
    study = study_create(user=member, workspace=workspace, name="s")
    Study.objects.filter(pk=study.pk).update(progress={"finished": 2, "n_trials": 20})
    socket = communicator(study, viewer)

    async def scenario() -> None:
        connected, _ = await socket.connect()
        assert connected
        first = await socket.receive_json_from(timeout=5)
        assert first["type"] == "study.snapshot" and first["progress"] == {"finished": 2, "n_trials": 20}
        await sync_to_async(publish)(study.pk, "trial.epoch", trial=0, epoch=1, epochs=3, metrics={"val_accuracy": 0.9})
        event = await socket.receive_json_from(timeout=5)
        assert event["type"] == "trial.epoch" and event["epoch"] == 1 and event["study_id"] == study.pk
        assert await socket.receive_nothing(timeout=0.3)
        await socket.disconnect()

    async_to_sync(scenario)()


def test_without_a_cross_process_layer_snapshot_changes_arrive_within_a_second(
    workspace: Any, member: Any
) -> None:
    study = study_create(user=member, workspace=workspace, name="s")
    socket = communicator(study, member)

    async def scenario() -> None:
        connected, _ = await socket.connect()
        assert connected
        await socket.receive_json_from(timeout=5)  # the first snapshot
        # As a worker in another process would: the stored snapshot changes, no event.
        await sync_to_async(Study.objects.filter(pk=study.pk).update)(progress={"finished": 5, "n_trials": 20})
        update = await socket.receive_json_from(timeout=1.0)
        assert update["type"] == "study.snapshot" and update["progress"]["finished"] == 5
        await socket.disconnect()

    async_to_sync(scenario)()
