"""The accounts pages: log in (with the API's lockout), log out, password, sign-up,
invitations, the workspace switcher, members and API tokens."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts import services
from accounts.authentication import hash_key
from accounts.models import ApiToken, Invitation, Membership, Role, Workspace
from accounts.portal import SESSION_KEY

User = get_user_model()
pytestmark = pytest.mark.django_db

Web = Callable[[Any], Client]


@pytest.fixture
def web() -> Web:
    """``web(user)``: a browser-like client signed in as ``user`` (``None``: anonymous)."""

    def make(user: Any) -> Client:
        client = Client(HTTP_HOST="localhost")
        if user is not None:
            client.force_login(user)
        return client

    return make


def members_url(workspace: Workspace) -> str:
    return f"/accounts/workspaces/{workspace.slug}/members/"


def role_in(workspace: Workspace, user: Any) -> str | None:
    return Membership.objects.filter(workspace=workspace, user=user).values_list("role", flat=True).first()


def text(response: Any) -> str:
    return response.content.decode()


# --- Log in, log out, password ---------------------------------------------------------------------


def test_login_page_has_labelled_fields(web: Web) -> None:
    response = web(None).get("/accounts/login/")
    assert response.status_code == 200
    assert '<label for="id_username">' in text(response)
    assert '<label for="id_password">' in text(response)


def test_login_signs_in_and_honours_a_safe_next(web: Web, owner: Any) -> None:
    client = web(None)
    response = client.post("/accounts/login/", {"username": "olivia", "password": "olivia-pass-123", "next": "/accounts/tokens/"})
    assert response.status_code == 302 and response["Location"] == "/accounts/tokens/"
    assert client.get("/accounts/tokens/").status_code == 200


def test_login_ignores_a_next_on_another_site(web: Web, owner: Any) -> None:
    response = web(None).post(
        "/accounts/login/", {"username": "olivia", "password": "olivia-pass-123", "next": "https://evil.example/"}
    )
    assert response.status_code == 302 and response["Location"] == "/studies/"


def test_wrong_password_says_so_and_signs_nobody_in(web: Web, owner: Any) -> None:
    client = web(None)
    response = client.post("/accounts/login/", {"username": "olivia", "password": "nope"})
    assert response.status_code == 200
    assert "Wrong user name or password." in text(response)
    assert "_auth_user_id" not in client.session


def test_five_failed_logins_lock_the_name_and_the_page_says_until_when(web: Web, owner: Any) -> None:
    client = web(None)
    for _ in range(4):
        client.post("/accounts/login/", {"username": "olivia", "password": "wrong"})
    fifth = client.post("/accounts/login/", {"username": "olivia", "password": "wrong"})
    assert "refused until" in text(fifth)

    right_password = client.post("/accounts/login/", {"username": "olivia", "password": "olivia-pass-123"})
    assert right_password.status_code == 429
    assert re.search(r"refused until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", text(right_password))
    assert "_auth_user_id" not in client.session


def test_a_lockout_from_the_page_also_holds_for_the_api(web: Web, owner: Any, api_client: Any) -> None:
    client = web(None)
    for _ in range(5):
        client.post("/accounts/login/", {"username": "olivia", "password": "wrong"})
    response = api_client(None).post("/api/v1/auth/login/", {"username": "olivia", "password": "olivia-pass-123"}, format="json")
    assert response.status_code == 429


def test_logout_get_asks_and_post_logs_out(web: Web, member: Any) -> None:
    client = web(member)
    confirm = client.get("/accounts/logout/")
    assert confirm.status_code == 200 and 'action="/accounts/logout/"' in text(confirm)
    assert "_auth_user_id" in client.session
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session


def test_password_change_works(web: Web, member: Any) -> None:
    client = web(member)
    assert client.get("/accounts/password/").status_code == 200
    response = client.post(
        "/accounts/password/",
        {"old_password": "mia-pass-123", "new_password1": "a-much-better-secret-9", "new_password2": "a-much-better-secret-9"},
    )
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.check_password("a-much-better-secret-9")
    assert "_auth_user_id" in client.session  # still signed in


def test_password_change_with_a_wrong_old_password_changes_nothing(web: Web, member: Any) -> None:
    response = web(member).post(
        "/accounts/password/", {"old_password": "nope", "new_password1": "x-secret-12345", "new_password2": "x-secret-12345"}
    )
    assert response.status_code == 200 and 'aria-invalid="true"' in text(response)
    member.refresh_from_db()
    assert member.check_password("mia-pass-123")


@pytest.mark.parametrize("url", ["/accounts/tokens/", "/accounts/password/", "/accounts/invitations/accept/?token=x"])
def test_pages_need_a_login(web: Web, url: str, db: None) -> None:
    response = web(None).get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


def test_members_page_needs_a_login(web: Web, workspace: Workspace) -> None:
    response = web(None).get(members_url(workspace))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


# --- Sign-up and invitations -----------------------------------------------------------------------

NEW_ACCOUNT = {"username": "nina", "email": "nina@example.com", "password1": "a-good-secret-42", "password2": "a-good-secret-42"}


def test_signup_closed_is_a_404_saying_how_accounts_are_made(web: Web, settings: Any, db: None) -> None:
    settings.HPO_SIGNUP_OPEN = False
    client = web(None)
    response = client.get("/accounts/signup/")
    assert response.status_code == 404
    assert "made by an administrator or by invitation" in text(response)
    assert client.post("/accounts/signup/", NEW_ACCOUNT).status_code == 404
    assert not User.objects.filter(username="nina").exists()


def test_open_signup_makes_a_user_with_a_personal_workspace(web: Web, settings: Any, db: None) -> None:
    settings.HPO_SIGNUP_OPEN = True
    client = web(None)
    assert client.get("/accounts/signup/").status_code == 200
    response = client.post("/accounts/signup/", NEW_ACCOUNT)
    assert response.status_code == 302
    nina = User.objects.get(username="nina")
    assert nina.email == "nina@example.com" and nina.check_password("a-good-secret-42")
    assert Membership.objects.filter(user=nina, workspace__personal=True, role=Role.OWNER).exists()
    assert client.session["_auth_user_id"] == str(nina.pk)


def test_signup_refuses_a_taken_name_next_to_the_field(web: Web, settings: Any, member: Any) -> None:
    settings.HPO_SIGNUP_OPEN = True
    response = web(None).post("/accounts/signup/", {**NEW_ACCOUNT, "username": "mia"})
    assert response.status_code == 400
    assert 'id="id_username_error"' in text(response)


def test_signup_with_an_invitation_makes_a_member(web: Web, settings: Any, owner: Any, workspace: Workspace) -> None:
    settings.HPO_SIGNUP_OPEN = False
    invitation, token = services.member_invite(actor=owner, workspace=workspace, email="nina@example.com", role="member")
    client = web(None)
    page = client.get(f"/accounts/signup/?invitation={token}")
    assert page.status_code == 200 and "Vision team" in text(page)
    assert client.post(f"/accounts/signup/?invitation={token}", NEW_ACCOUNT).status_code == 302
    nina = User.objects.get(username="nina")
    assert role_in(workspace, nina) == Role.MEMBER
    invitation.refresh_from_db()
    assert invitation.accepted_by == nina
    assert client.session[SESSION_KEY] == workspace.slug


def test_signup_with_an_unknown_or_used_invitation_is_a_404(web: Web, owner: Any, workspace: Workspace) -> None:
    assert web(None).get("/accounts/signup/?invitation=not-a-token").status_code == 404
    _, token = services.member_invite(actor=owner, workspace=workspace, email="nina@example.com", role="member")
    web(None).post(f"/accounts/signup/?invitation={token}", NEW_ACCOUNT)
    again = web(None).get(f"/accounts/signup/?invitation={token}")
    assert again.status_code == 404 and "already used" in text(again)


def test_a_signed_in_user_accepts_an_invitation(web: Web, owner: Any, workspace: Workspace, outsider: Any) -> None:
    _, token = services.member_invite(actor=owner, workspace=workspace, email="oscar@example.com", role="viewer")
    client = web(outsider)
    page = client.get(f"/accounts/invitations/accept/?token={token}")
    assert page.status_code == 200 and "Vision team" in text(page)
    assert role_in(workspace, outsider) is None  # a GET changes nothing
    response = client.post("/accounts/invitations/accept/", {"token": token})
    assert response.status_code == 302
    assert role_in(workspace, outsider) == Role.VIEWER
    assert client.session[SESSION_KEY] == workspace.slug
    assert client.post("/accounts/invitations/accept/", {"token": token}).status_code == 404


# --- Workspace switcher -----------------------------------------------------------------------------


def test_switch_workspace_sets_the_session_and_goes_back(web: Web, member: Any, workspace: Workspace) -> None:
    client = web(member)
    response = client.post("/accounts/workspace/", {"workspace": workspace.slug, "next": "/accounts/tokens/"})
    assert response.status_code == 302 and response["Location"] == "/accounts/tokens/"
    assert client.session[SESSION_KEY] == workspace.slug


def test_switch_workspace_ignores_a_next_on_another_site(web: Web, member: Any, workspace: Workspace) -> None:
    response = web(member).post("/accounts/workspace/", {"workspace": workspace.slug, "next": "//evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/"


def test_switch_workspace_refuses_a_workspace_the_user_is_not_in(web: Web, outsider: Any, workspace: Workspace) -> None:
    client = web(outsider)
    response = client.post("/accounts/workspace/", {"workspace": workspace.slug, "next": "/"})
    assert response.status_code == 404
    assert client.session.get(SESSION_KEY) != workspace.slug


def test_switch_workspace_is_post_only(web: Web, member: Any, workspace: Workspace) -> None:
    assert web(member).get(f"/accounts/workspace/?workspace={workspace.slug}").status_code == 405


# --- Members ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "admin_user", "member", "viewer"])
def test_members_page_shows_members_and_roles_to_everyone_in_the_workspace(
    web: Web, request: Any, who: str, workspace: Workspace, admin_user: Any, member: Any, viewer: Any
) -> None:
    response = web(request.getfixturevalue(who)).get(members_url(workspace))
    assert response.status_code == 200
    page = text(response)
    for name in ("olivia", "adam", "mia", "victor"):
        assert name in page
    assert 'aria-current="page">Members' in page


def test_only_admins_see_the_forms(web: Web, workspace: Workspace, admin_user: Any, viewer: Any) -> None:
    assert 'name="add-username"' in text(web(admin_user).get(members_url(workspace)))
    viewer_page = text(web(viewer).get(members_url(workspace)))
    assert 'name="add-username"' not in viewer_page
    assert 'name="settings-max_concurrent_trials"' not in viewer_page
    assert "Viewer" in viewer_page


def test_every_control_on_the_members_page_has_a_label(web: Web, workspace: Workspace, owner: Any, member: Any) -> None:
    page = text(web(owner).get(members_url(workspace)))
    ids = re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', page)
    assert ids
    for control_id in ids:
        assert f'<label for="{control_id}"' in page, control_id


def test_outsider_gets_a_404_on_another_workspaces_members_page(web: Web, outsider: Any, workspace: Workspace) -> None:
    client = web(outsider)
    assert client.get(members_url(workspace)).status_code == 404
    assert client.post(members_url(workspace), {"action": "add", "add-username": "oscar", "add-role": "owner"}).status_code == 404
    assert role_in(workspace, outsider) is None


def test_admin_adds_an_existing_user(web: Web, admin_user: Any, workspace: Workspace, outsider: Any) -> None:
    client = web(admin_user)
    response = client.post(members_url(workspace), {"action": "add", "add-username": "oscar", "add-role": "member"})
    assert response.status_code == 302
    assert role_in(workspace, outsider) == Role.MEMBER
    assert "oscar is now a member" in text(client.get(members_url(workspace)))


def test_adding_an_unknown_user_is_refused_next_to_the_field(web: Web, admin_user: Any, workspace: Workspace) -> None:
    response = web(admin_user).post(members_url(workspace), {"action": "add", "add-username": "nobody", "add-role": "member"})
    assert response.status_code == 400
    assert re.search(r'id="id_add-username_error"><li>No user named', text(response))


def test_admin_cannot_make_an_owner(web: Web, admin_user: Any, workspace: Workspace, outsider: Any) -> None:
    response = web(admin_user).post(members_url(workspace), {"action": "add", "add-username": "oscar", "add-role": "owner"})
    assert response.status_code == 403
    assert "Only an owner can make someone an owner." in text(response)
    assert role_in(workspace, outsider) is None


def test_viewer_cannot_add_change_or_remove(
    web: Web, viewer: Any, member: Any, outsider: Any, workspace: Workspace
) -> None:
    client = web(viewer)
    mia = Membership.objects.get(workspace=workspace, user=member)
    add = client.post(members_url(workspace), {"action": "add", "add-username": "oscar", "add-role": "viewer"})
    change = client.post(members_url(workspace), {"action": "role", "membership": mia.pk, "role": "viewer"})
    remove = client.post(members_url(workspace), {"action": "remove", "membership": mia.pk})
    invite = client.post(members_url(workspace), {"action": "invite", "invite-email": "x@example.com", "invite-role": "viewer"})
    quotas = client.post(members_url(workspace), {"action": "settings", "settings-name": "Mine", "settings-max_concurrent_trials": "1"})
    for response in (add, change, remove, invite, quotas):
        assert response.status_code == 403
        assert "needs the admin role" in text(response)
    assert role_in(workspace, outsider) is None
    assert role_in(workspace, member) == Role.MEMBER
    assert not Invitation.objects.exists()
    workspace.refresh_from_db()
    assert workspace.name == "Vision team" and workspace.max_concurrent_trials is None


def test_admin_changes_a_role_and_removes_a_member(web: Web, admin_user: Any, member: Any, workspace: Workspace) -> None:
    client = web(admin_user)
    mia = Membership.objects.get(workspace=workspace, user=member)
    assert client.post(members_url(workspace), {"action": "role", "membership": mia.pk, "role": "viewer"}).status_code == 302
    assert role_in(workspace, member) == Role.VIEWER
    assert client.post(members_url(workspace), {"action": "remove", "membership": mia.pk}).status_code == 302
    assert role_in(workspace, member) is None


def test_an_admin_cannot_demote_an_owner_and_the_row_says_why(web: Web, admin_user: Any, owner: Any, workspace: Workspace) -> None:
    olivia = Membership.objects.get(workspace=workspace, user=owner)
    response = web(admin_user).post(members_url(workspace), {"action": "role", "membership": olivia.pk, "role": "member"})
    assert response.status_code == 403
    assert f'id="member-{olivia.pk}-error"' in text(response)
    assert role_in(workspace, owner) == Role.OWNER


def test_the_last_owner_cannot_leave(web: Web, owner: Any, workspace: Workspace) -> None:
    olivia = Membership.objects.get(workspace=workspace, user=owner)
    response = web(owner).post(members_url(workspace), {"action": "remove", "membership": olivia.pk})
    assert response.status_code == 400
    assert "last owner" in text(response)
    assert role_in(workspace, owner) == Role.OWNER


def test_a_member_may_leave(web: Web, member: Any, workspace: Workspace) -> None:
    mia = Membership.objects.get(workspace=workspace, user=member)
    response = web(member).post(members_url(workspace), {"action": "remove", "membership": mia.pk})
    assert response.status_code == 302
    assert role_in(workspace, member) is None


def test_a_membership_of_another_workspace_is_a_404(web: Web, owner: Any, workspace: Workspace, outsider: Any) -> None:
    elsewhere = Membership.objects.get(user=outsider)
    response = web(owner).post(members_url(workspace), {"action": "remove", "membership": elsewhere.pk})
    assert response.status_code == 404
    assert Membership.objects.filter(pk=elsewhere.pk).exists()


def test_invitation_links_are_shown_once_and_work(web: Web, admin_user: Any, workspace: Workspace) -> None:
    client = web(admin_user)
    response = client.post(members_url(workspace), {"action": "invite", "invite-email": "Nina@Example.com", "invite-role": "member"})
    assert response.status_code == 302
    page = text(client.get(members_url(workspace)))
    token = re.search(r"/accounts/signup/\?invitation=([\w-]+)", page).group(1)  # type: ignore[union-attr]
    assert f"/accounts/invitations/accept/?token={token}" in page
    assert "nina@example.com" in page  # in the pending list
    assert token not in text(client.get(members_url(workspace)))  # once only
    invitation = Invitation.objects.get()
    assert token not in invitation.token_hash
    web(None).post(f"/accounts/signup/?invitation={token}", NEW_ACCOUNT)
    assert role_in(workspace, User.objects.get(username="nina")) == Role.MEMBER


def test_admin_withdraws_a_pending_invitation(web: Web, admin_user: Any, workspace: Workspace) -> None:
    invitation, token = services.member_invite(actor=admin_user, workspace=workspace, email="x@example.com", role="viewer")
    response = web(admin_user).post(members_url(workspace), {"action": "withdraw", "invitation": invitation.pk})
    assert response.status_code == 302
    assert not Invitation.objects.exists()
    assert web(None).get(f"/accounts/signup/?invitation={token}").status_code == 404


def test_admin_edits_the_name_and_quotas(web: Web, admin_user: Any, workspace: Workspace) -> None:
    response = web(admin_user).post(
        members_url(workspace),
        {"action": "settings", "settings-name": "Vision", "settings-max_concurrent_trials": "4", "settings-gpu_hours_per_month": "12.5"},
    )
    assert response.status_code == 302
    workspace.refresh_from_db()
    assert (workspace.name, workspace.max_concurrent_trials, workspace.gpu_hours_per_month) == ("Vision", 4, 12.5)
    web(admin_user).post(members_url(workspace), {"action": "settings", "settings-name": "Vision"})
    workspace.refresh_from_db()
    assert workspace.max_concurrent_trials is None and workspace.gpu_hours_per_month is None  # empty: no limit


def test_a_bad_quota_is_refused_next_to_its_field(web: Web, admin_user: Any, workspace: Workspace) -> None:
    response = web(admin_user).post(
        members_url(workspace), {"action": "settings", "settings-name": "Vision", "settings-max_concurrent_trials": "0"}
    )
    assert response.status_code == 400
    assert re.search(r'id="id_settings-max_concurrent_trials_error"><li>Trials running at once must be', text(response))
    workspace.refresh_from_db()
    assert workspace.name == "Vision team" and workspace.max_concurrent_trials is None


# --- API tokens ------------------------------------------------------------------------------------


def test_tokens_page_shows_the_key_once_and_stores_only_its_hash(web: Web, member: Any) -> None:
    client = web(member)
    page = client.get("/accounts/tokens/")
    assert page.status_code == 200 and 'aria-current="page">API tokens' in text(page)
    response = client.post("/accounts/tokens/", {"action": "create", "name": "laptop"})
    assert response.status_code == 302
    shown = text(client.get("/accounts/tokens/"))
    key = re.search(r"hpo_[\w-]+", shown).group(0)  # type: ignore[union-attr]
    assert "will not be shown again" in shown
    token = ApiToken.objects.get(user=member)
    assert token.key_hash == hash_key(key)
    assert key not in (token.name, token.prefix, token.key_hash)
    later = text(client.get("/accounts/tokens/"))
    assert key not in later and "laptop" in later and token.prefix in later
    assert web(None).get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200


def test_a_duplicate_token_name_is_refused_next_to_the_field(web: Web, member: Any) -> None:
    services.token_create(user=member, name="laptop")
    response = web(member).post("/accounts/tokens/", {"action": "create", "name": "laptop"})
    assert response.status_code == 400 and 'id="id_name_error"' in text(response)
    assert ApiToken.objects.filter(user=member).count() == 1


def test_revoke_a_token(web: Web, member: Any) -> None:
    token, _ = services.token_create(user=member, name="laptop")
    assert web(member).post("/accounts/tokens/", {"action": "revoke", "token": token.pk}).status_code == 302
    assert not ApiToken.objects.exists()


def test_another_users_token_is_a_404(web: Web, member: Any, outsider: Any) -> None:
    token, _ = services.token_create(user=member, name="ci-runner")
    assert web(outsider).post("/accounts/tokens/", {"action": "revoke", "token": token.pk}).status_code == 404
    assert "ci-runner" not in text(web(outsider).get("/accounts/tokens/"))
    assert ApiToken.objects.filter(pk=token.pk).exists()
