"""The study websocket with an API token (``accounts.ws_auth``): ``?token=`` or an
``Authorization: Token`` header; an unknown or revoked token is refused as not signed in
(4401), whatever session comes along.

Each conversation runs in one event loop (``async_to_sync`` around the whole scenario)."""
from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import ApiToken, Workspace
from accounts.services import token_create, token_revoke
from hpo_platform.asgi import application
from studies.models import Study
from studies.services import study_create

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


def session_cookie(user: Any) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def connect(path: str, headers: list[tuple[bytes, bytes]]) -> tuple[bool, Any, dict[str, Any] | None]:
    """Connect; when accepted, read the first message (the snapshot) and hang up."""

    async def scenario() -> tuple[bool, Any, dict[str, Any] | None]:
        socket = WebsocketCommunicator(application, path, headers=[*ORIGIN, *headers])
        connected, code = await socket.connect()
        first = None
        if connected:
            first = await socket.receive_json_from(timeout=5)
            await socket.disconnect()
        return connected, code, first

    return async_to_sync(scenario)()


@pytest.fixture
def study(workspace: Workspace, member: Any) -> Study:
    study = study_create(user=member, workspace=workspace, name="s")
    Study.objects.filter(pk=study.pk).update(progress={"finished": 1, "n_trials": 4})
    return study


def test_a_token_in_the_url_connects_and_gets_the_snapshot(study: Study, viewer: Any) -> None:
    _, key = token_create(user=viewer, name="dashboard")

    connected, _, first = connect(f"/ws/studies/{study.pk}/?token={key}", [])

    assert connected
    assert first is not None and first["type"] == "study.snapshot" and first["progress"]["finished"] == 1


@pytest.mark.parametrize("keyword", [b"Token", b"Bearer"])
def test_a_token_in_the_authorization_header_connects(study: Study, viewer: Any, keyword: bytes) -> None:
    _, key = token_create(user=viewer, name="script")

    connected, _, first = connect(f"/ws/studies/{study.pk}/", [(b"authorization", keyword + b" " + key.encode())])

    assert connected and first is not None and first["study_id"] == study.pk
    assert ApiToken.objects.get(user=viewer).last_used_at is not None


def test_an_unknown_token_is_refused_as_not_signed_in(study: Study) -> None:
    assert connect(f"/ws/studies/{study.pk}/?token=hpo_made-up", []) == (False, 4401, None)
    assert connect(f"/ws/studies/{study.pk}/", [(b"authorization", b"Token hpo_made-up")]) == (False, 4401, None)


def test_a_revoked_token_is_refused_even_with_a_valid_session(study: Study, viewer: Any) -> None:
    token, key = token_create(user=viewer, name="old")
    token_revoke(user=viewer, token=token)

    result = connect(f"/ws/studies/{study.pk}/?token={key}", [session_cookie(viewer)])

    assert result == (False, 4401, None)


def test_a_malformed_authorization_header_is_refused(study: Study, viewer: Any) -> None:
    result = connect(f"/ws/studies/{study.pk}/", [(b"authorization", b"Token"), session_cookie(viewer)])

    assert result == (False, 4401, None)


def test_an_outsiders_token_gets_not_found(study: Study, outsider: Any) -> None:
    _, key = token_create(user=outsider, name="theirs")

    assert connect(f"/ws/studies/{study.pk}/?token={key}", []) == (False, 4404, None)


def test_a_token_speaks_for_its_user_not_the_sessions(study: Study, viewer: Any, outsider: Any) -> None:
    _, key = token_create(user=outsider, name="theirs")

    # The viewer's session could see the study; the outsider's token cannot.
    assert connect(f"/ws/studies/{study.pk}/?token={key}", [session_cookie(viewer)]) == (False, 4404, None)


def test_without_a_token_the_session_still_works(study: Study, viewer: Any) -> None:
    connected, _, first = connect(f"/ws/studies/{study.pk}/", [session_cookie(viewer)])

    assert connected and first is not None


def test_an_inactive_users_token_is_refused(study: Study, viewer: Any) -> None:
    _, key = token_create(user=viewer, name="dashboard")
    viewer.is_active = False
    viewer.save()

    assert connect(f"/ws/studies/{study.pk}/?token={key}", []) == (False, 4401, None)
