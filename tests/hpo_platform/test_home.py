"""The landing page: a way in for visitors; signed-in users go straight to their studies."""
from __future__ import annotations

from typing import Any

from django.test import Client


def test_the_landing_page_links_to_login_the_api_docs_and_the_admin(db: None) -> None:
    response = Client(HTTP_HOST="localhost").get("/")
    assert response.status_code == 200
    for link in (b'href="/accounts/login/"', b'href="/api/docs/"', b'href="/admin/"'):
        assert link in response.content


def test_signed_in_users_land_on_their_studies(member: Any) -> None:
    client = Client(HTTP_HOST="localhost")
    client.force_login(member)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/studies/"
