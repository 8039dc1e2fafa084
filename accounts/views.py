"""The accounts pages (docs/portal.md): log in and out, password, sign-up, invitations, the
workspace switcher, members and API tokens.

Views only translate HTTP, as ``accounts.api`` does: reads come from ``accounts.selectors``
(scoped to the user, so another workspace is a 404) and writes go through
``accounts.services``, whose refusals are shown next to the field they name. A service's
``PermissionDenied`` answers 403, other refusals 400, ``NotFound`` 404; a success redirects
(post/redirect/get) with a message.
"""
from __future__ import annotations

import logging
from typing import Any, Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, PasswordChangeView
from django.db import transaction
from django.db.models import QuerySet
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from rest_framework.throttling import ScopedRateThrottle

from accounts import selectors, services
from accounts.errors import ApplicationError, NotFound, PermissionDenied, ValidationError
from accounts.forms import (
    InvitationForm,
    LoginForm,
    MemberAddForm,
    SignupForm,
    TokenForm,
    WorkspaceSettingsForm,
    add_service_error,
)
from accounts.models import Invitation, Membership, Role, Workspace
from accounts.portal import set_current_workspace

logger = logging.getLogger(__name__)
User = get_user_model()


def _refusal_status(error: ApplicationError) -> int:
    """The status of a page showing a service's refusal (a ``NotFound`` never gets here)."""
    if isinstance(error, NotFound):
        raise Http404(error.message)
    return 403 if isinstance(error, PermissionDenied) else 400


def _int_or_404(value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise Http404("No such item.") from None


# --- Log in, log out, password --------------------------------------------------------------------


class _LoginScope:
    """Makes the page share the API login's per-client throttle (scope ``login``)."""

    throttle_scope = "login"


class PortalLoginView(LoginView):
    """Django's login page, with the API's lockout (``services.login_authenticate``: a user
    name with too many failures is refused until a time the page states) and its per-client
    throttle."""

    template_name = "accounts/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        throttle = ScopedRateThrottle()
        if not throttle.allow_request(request, _LoginScope()):
            form = self.get_form()
            wait = int(throttle.wait() or 60) + 1
            form.add_error(None, f"Too many login attempts from your address; try again in {wait} seconds.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "lockout_failures": settings.HPO_LOGIN_LOCKOUT_FAILURES}

    def form_invalid(self, form: LoginForm) -> HttpResponse:  # type: ignore[override]
        return self.render_to_response(self.get_context_data(form=form), status=429 if form.locked_out else 200)


def logout_view(request: HttpRequest) -> HttpResponse:
    """POST logs out; GET shows a button that does (a link must not log anyone out)."""
    if request.method == "POST":
        logout(request)
        messages.success(request, "You are logged out.")
        return redirect(settings.LOGOUT_REDIRECT_URL)
    if not request.user.is_authenticated:
        return redirect("accounts:login")
    return render(request, "accounts/logout.html")


class PortalPasswordChangeView(PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:password-change")
    extra_context = {"nav": "password"}

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        messages.success(self.request, "Your password was changed.")
        return response


# --- Sign-up and invitations ----------------------------------------------------------------------


def _invitation_gone(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/invitation_gone.html", status=404)


def signup(request: HttpRequest) -> HttpResponse:
    """Open sign-up (``HPO_SIGNUP_OPEN``) or sign-up with an invitation (``?invitation=``),
    which the new user accepts in the same transaction; otherwise a 404 saying how accounts
    are made."""
    token = request.GET.get("invitation", "")
    if request.user.is_authenticated:
        if token:
            return redirect(f"{reverse('accounts:accept-invitation')}?{urlencode({'token': token})}")
        return redirect("home")
    invitation = selectors.invitation_get_pending(token=token) if token else None
    if token and invitation is None:
        return _invitation_gone(request)
    if invitation is None and not settings.HPO_SIGNUP_OPEN:
        return render(request, "accounts/signup_closed.html", status=404)
    form = SignupForm(request.POST or None, initial={"email": invitation.email} if invitation else None)
    if request.method == "POST" and form.is_valid():
        try:
            return _sign_up(request, form, token if invitation else None)
        except ApplicationError as error:
            add_service_error(form, error)
            status = _refusal_status(error)
    else:
        status = 400 if form.is_bound else 200
    context = {"form": form, "invitation": invitation, "existing_account_url": _login_to_accept(token) if invitation else ""}
    return render(request, "accounts/signup.html", context, status=status)


def _login_to_accept(token: str) -> str:
    """The login page, going on to accept the invitation: for an invitee who has an account."""
    accept = f"{reverse('accounts:accept-invitation')}?{urlencode({'token': token})}"
    return f"{reverse('accounts:login')}?{urlencode({'next': accept})}"


def _sign_up(request: HttpRequest, form: SignupForm, token: str | None) -> HttpResponse:
    with transaction.atomic():
        user = form.save()
        membership = services.invitation_accept(user=user, token=token) if token else None
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    if membership is not None:
        set_current_workspace(request, membership.workspace)
        messages.success(
            request, f"Welcome, {user.get_username()}: you joined {membership.workspace.name} as {membership.get_role_display().lower()}."
        )
    else:
        messages.success(request, f"Welcome, {user.get_username()}: your account and a personal workspace are ready.")
    logger.info("user %s signed up (invited: %s)", user.get_username(), membership is not None)
    return redirect("home")


@login_required
def accept_invitation(request: HttpRequest) -> HttpResponse:
    """GET shows what the invitation offers with a button; POST joins."""
    token = request.POST.get("token", "") if request.method == "POST" else request.GET.get("token", "")
    invitation = selectors.invitation_get_pending(token=token)
    if invitation is None:
        return _invitation_gone(request)
    if request.method != "POST":
        return render(request, "accounts/accept_invitation.html", {"invitation": invitation, "token": token})
    try:
        membership = services.invitation_accept(user=request.user, token=token)
    except NotFound:
        return _invitation_gone(request)
    except ApplicationError as error:
        context = {"invitation": invitation, "token": token, "error": error.message}
        return render(request, "accounts/accept_invitation.html", context, status=_refusal_status(error))
    set_current_workspace(request, membership.workspace)
    messages.success(request, f"You are in {membership.workspace.name} as {membership.get_role_display().lower()}.")
    return redirect("home")


# --- Workspace switcher ---------------------------------------------------------------------------


@require_POST
@login_required
def switch_workspace(request: HttpRequest) -> HttpResponse:
    """Make one of the user's workspaces the current one (another is a 404) and go back."""
    try:
        workspace = selectors.workspace_get(user=request.user, slug=request.POST.get("workspace", ""))
    except NotFound as error:
        raise Http404(error.message) from None
    set_current_workspace(request, workspace)
    messages.success(request, f"You are working in {workspace.name}.")
    next_url = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return redirect(next_url if safe else "/")


# --- Members --------------------------------------------------------------------------------------


class MembersPage:
    """One request to a workspace's members page: the workspace (404 for outsiders), the
    user's role, the forms, and the refusals to show beside a member or an invitation."""

    def __init__(self, request: HttpRequest, slug: str) -> None:
        self.request = request
        try:
            self.workspace: Workspace = selectors.workspace_get(user=request.user, slug=slug)
        except NotFound as error:
            raise Http404(error.message) from None
        self.role = services.role_of(user=request.user, workspace=self.workspace)
        self.add_form = MemberAddForm(prefix="add")
        self.invite_form = InvitationForm(prefix="invite")
        self.settings_form = WorkspaceSettingsForm(prefix="settings", initial=self._settings())
        self.row_errors: dict[str, str] = {}

    def _settings(self) -> dict[str, Any]:
        fields = ("name", "max_concurrent_trials", "gpu_hours_per_month")
        return {field: getattr(self.workspace, field) for field in fields}

    @property
    def can_manage(self) -> bool:
        return self.role is not None and self.role.at_least(Role.ADMIN)

    def memberships(self) -> list[Membership]:
        memberships = list(
            selectors.membership_list(user=self.request.user, workspace=self.workspace).order_by("created_at", "id")
        )
        for membership in memberships:
            membership.error = self.row_errors.get(f"member-{membership.pk}")  # type: ignore[attr-defined]
        return memberships

    def invitations(self) -> list[Invitation]:
        if not self.can_manage:
            return []
        pending: QuerySet[Invitation] = selectors.invitation_list(user=self.request.user, workspace=self.workspace)
        invitations = list(pending.filter(accepted_at__isnull=True))
        for invitation in invitations:
            invitation.error = self.row_errors.get(f"invitation-{invitation.pk}")  # type: ignore[attr-defined]
        return invitations

    def render(self, status: int = 200) -> HttpResponse:
        context = {
            "nav": "members",
            "workspace": self.workspace,
            "role": self.role,
            "can_manage": self.can_manage,
            "memberships": self.memberships(),
            "invitations": self.invitations(),
            "roles": Role.choices,
            "add_form": self.add_form,
            "invite_form": self.invite_form,
            "settings_form": self.settings_form,
            "now": timezone.now(),
        }
        return render(self.request, "accounts/members.html", context, status=status)

    def refused(self, error: ApplicationError, *, form: Form | None = None, row: str = "", aliases: dict[str, str] | None = None) -> HttpResponse:
        status = _refusal_status(error)
        if form is not None:
            add_service_error(form, error, aliases=aliases)
        else:
            self.row_errors[row] = error.message
        return self.render(status=status)

    def done(self, message: str) -> HttpResponse:
        messages.success(self.request, message)
        return redirect("accounts:members", self.workspace.slug)


@login_required
def members(request: HttpRequest, slug: str) -> HttpResponse:
    """Anyone in the workspace sees its members, roles and quotas; admins and owners manage
    them (the services decide who may do what). POST ``action`` names the change."""
    page = MembersPage(request, slug)
    if request.method != "POST":
        return page.render()
    action = MEMBER_ACTIONS.get(request.POST.get("action", ""))
    if action is None:
        return HttpResponseBadRequest("Unknown action.")
    return action(page)


def _add_member(page: MembersPage) -> HttpResponse:
    form = page.add_form = MemberAddForm(page.request.POST, prefix="add")
    if not form.is_valid():
        return page.render(status=400)
    actor = page.request.user
    try:
        # The role first, so that only admins learn which user names exist.
        services.require_role(user=actor, workspace=page.workspace, at_least=Role.ADMIN)
        user = User.objects.filter(username=form.cleaned_data["username"], is_active=True).first()
        if user is None:
            raise ValidationError(
                f"No user named {form.cleaned_data['username']!r}; invite them by e-mail instead.", field="username"
            )
        membership = services.membership_add(actor=actor, workspace=page.workspace, user=user, role=form.cleaned_data["role"])
    except ApplicationError as error:
        return page.refused(error, form=form, aliases={"user": "username"})
    return page.done(f"{user.get_username()} is now a {membership.get_role_display().lower()} of {page.workspace.name}.")


def _invite(page: MembersPage) -> HttpResponse:
    form = page.invite_form = InvitationForm(page.request.POST, prefix="invite")
    if not form.is_valid():
        return page.render(status=400)
    try:
        invitation, token = services.member_invite(actor=page.request.user, workspace=page.workspace, **form.cleaned_data)
    except ApplicationError as error:
        return page.refused(error, form=form)
    build = page.request.build_absolute_uri
    signup_link = build(f"{reverse('accounts:signup')}?{urlencode({'invitation': token})}")
    accept_link = build(f"{reverse('accounts:accept-invitation')}?{urlencode({'token': token})}")
    messages.info(
        page.request,
        f"Invitation for {invitation.email} as {invitation.get_role_display().lower()} made; it is valid until "
        f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC. Send them a link (shown only now, never again): "
        f"to make a new account {signup_link} — or, if they already have one, {accept_link}",
        extra_tags="invitation-link",
    )
    return redirect("accounts:members", page.workspace.slug)


def _withdraw_invitation(page: MembersPage) -> HttpResponse:
    invitation_id = _int_or_404(page.request.POST.get("invitation"))
    try:
        invitation = selectors.invitation_get(user=page.request.user, workspace=page.workspace, invitation_id=invitation_id)
        services.invitation_revoke(actor=page.request.user, invitation=invitation)
    except ApplicationError as error:
        return page.refused(error, row=f"invitation-{invitation_id}")
    return page.done(f"The invitation for {invitation.email} was withdrawn.")


def _membership(page: MembersPage) -> Membership:
    membership_id = _int_or_404(page.request.POST.get("membership"))
    try:
        return selectors.membership_get(user=page.request.user, workspace=page.workspace, membership_id=membership_id)
    except NotFound as error:
        raise Http404(error.message) from None


def _change_role(page: MembersPage) -> HttpResponse:
    membership = _membership(page)
    try:
        membership = services.membership_change_role(
            actor=page.request.user, membership=membership, role=page.request.POST.get("role", "")
        )
    except ApplicationError as error:
        return page.refused(error, row=f"member-{membership.pk}")
    return page.done(f"{membership.user.get_username()} is now a {membership.get_role_display().lower()}.")


def _remove_member(page: MembersPage) -> HttpResponse:
    membership = _membership(page)
    username = membership.user.get_username()
    try:
        services.membership_remove(actor=page.request.user, membership=membership)
    except ApplicationError as error:
        return page.refused(error, row=f"member-{membership.pk}")
    if membership.user_id == page.request.user.pk:
        messages.success(page.request, f"You left {page.workspace.name}.")
        return redirect("home")
    return page.done(f"{username} was removed from {page.workspace.name}.")


def _update_settings(page: MembersPage) -> HttpResponse:
    form = page.settings_form = WorkspaceSettingsForm(page.request.POST, prefix="settings")
    if not form.is_valid():
        return page.render(status=400)
    try:
        services.workspace_update(actor=page.request.user, workspace=page.workspace, **form.cleaned_data)
    except ApplicationError as error:
        return page.refused(error, form=form)
    return page.done("The workspace settings were saved.")


MEMBER_ACTIONS: dict[str, Callable[[MembersPage], HttpResponse]] = {
    "add": _add_member,
    "invite": _invite,
    "withdraw": _withdraw_invitation,
    "role": _change_role,
    "remove": _remove_member,
    "settings": _update_settings,
}


# --- API tokens -----------------------------------------------------------------------------------


def _render_tokens(request: HttpRequest, form: TokenForm, status: int = 200, errors: dict[int, str] | None = None) -> HttpResponse:
    tokens = list(selectors.token_list(user=request.user))
    for token in tokens:
        token.error = (errors or {}).get(token.pk)  # type: ignore[attr-defined]
    return render(request, "accounts/tokens.html", {"nav": "tokens", "form": form, "tokens": tokens}, status=status)


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    """The user's own API tokens. A new token's key is shown once, in the message on the page
    after making it (only its hash is stored); POST ``action`` is ``create`` or ``revoke``."""
    if request.method != "POST":
        return _render_tokens(request, TokenForm())
    action = request.POST.get("action", "")
    if action == "revoke":
        return _revoke_token(request)
    if action != "create":
        return HttpResponseBadRequest("Unknown action.")
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _render_tokens(request, form, status=400)
    try:
        token, key = services.token_create(user=request.user, name=form.cleaned_data["name"])
    except ApplicationError as error:
        add_service_error(form, error)
        return _render_tokens(request, form, status=_refusal_status(error))
    messages.success(
        request,
        f"Token “{token.name}” made. Its key, shown only now (it will not be shown again; copy it now): {key}",
        extra_tags="api-key",
    )
    return redirect("accounts:tokens")


def _revoke_token(request: HttpRequest) -> HttpResponse:
    token_id = _int_or_404(request.POST.get("token"))
    try:
        token = selectors.token_get(user=request.user, token_id=token_id)
        services.token_revoke(user=request.user, token=token)
    except ApplicationError as error:
        return _render_tokens(request, TokenForm(), status=_refusal_status(error), errors={token_id: error.message})
    messages.success(request, f"Token “{token.name}” was revoked; scripts using it can no longer sign in.")
    return redirect("accounts:tokens")
