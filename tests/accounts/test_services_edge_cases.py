"""Edge cases of the team services: malformed invitation addresses, slug races."""
from __future__ import annotations

from typing import Any

import pytest

from accounts.errors import ValidationError
from accounts.models import Invitation
from accounts.services import member_invite


@pytest.mark.parametrize("email", ["nina@", "@example.com", "nina", "nina@@example.com"])
def test_invite_refuses_a_malformed_address(workspace: Any, owner: Any, email: str) -> None:
    with pytest.raises(ValidationError) as error:
        member_invite(actor=owner, workspace=workspace, email=email, role="member")
    assert error.value.field == "email"
    assert not Invitation.objects.exists()


def test_derived_slug_taken_in_a_race_gets_a_suffix(
    workspace: Any, owner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accounts import services

    # As if another request created "vision-team" between the check and the insert.
    monkeypatch.setattr(services, "_unique_slug", lambda name: workspace.slug)
    twin = services.workspace_create(owner=owner, name="Vision team")
    assert twin.slug.startswith(f"{workspace.slug}-") and twin.slug != workspace.slug
