"""Membership changes in the admin obey the services' rules."""
from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEntry, Membership, Role
from tests.conftest import make_user


@pytest.fixture
def operator(workspace: Any) -> Any:
    user = make_user("root-operator", is_staff=True, is_superuser=True)
    return user


@pytest.fixture
def client(operator: Any) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def test_admin_cannot_demote_the_last_owner(client: Client, workspace: Any, owner: Any) -> None:
    membership = Membership.objects.get(workspace=workspace, user=owner)
    url = reverse("admin:accounts_membership_change", args=[membership.pk])
    response = client.post(url, {"role": "viewer"}, follow=True)
    assert b"last owner" in response.content
    membership.refresh_from_db()
    assert membership.role == Role.OWNER
    assert not AuditEntry.objects.filter(action="membership.change_role").exists()


def test_admin_cannot_delete_the_last_owner(client: Client, workspace: Any, owner: Any) -> None:
    membership = Membership.objects.get(workspace=workspace, user=owner)
    url = reverse("admin:accounts_membership_delete", args=[membership.pk])
    response = client.post(url, {"post": "yes"}, follow=True)
    assert b"last owner" in response.content
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_admin_adds_member_through_the_service(client: Client, workspace: Any, outsider: Any) -> None:
    response = client.post(
        reverse("admin:accounts_membership_add"),
        {"user": outsider.pk, "workspace": workspace.pk, "role": "member"},
        follow=True,
    )
    assert response.status_code == 200
    assert Membership.objects.get(workspace=workspace, user=outsider).role == Role.MEMBER
    entry = AuditEntry.objects.get(action="membership.add")
    assert entry.actor_repr == "root-operator"


def test_admin_changes_role_with_an_audit_entry(client: Client, workspace: Any, member: Any) -> None:
    membership = Membership.objects.get(workspace=workspace, user=member)
    client.post(reverse("admin:accounts_membership_change", args=[membership.pk]), {"role": "admin"})
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    assert AuditEntry.objects.get(action="membership.change_role").details["to"] == "admin"
