"""The landing page says plainly what exists today."""
from __future__ import annotations

from django.test import Client


def test_home_page_points_to_the_admin_and_says_the_portal_is_not_built(db: None) -> None:
    response = Client().get("/")
    assert response.status_code == 200
    assert b'href="/admin/"' in response.content
    assert b"not built yet" in response.content
