"""The accounts API under /api/v1/: login, who am I, API tokens, workspaces, members,
invitations and the audit log (docs/api.md).

Views only translate HTTP: every queryset comes from ``accounts.selectors`` (scoped to the
user, so another workspace's object is a 404 for every method) and every write goes
through ``accounts.services``, which checks the role and records the audit entry.

CSRF: session-authenticated unsafe requests need the CSRF token (DRF's
``SessionAuthentication``), except login, which has no authentication classes so that the
first login can happen before the page has a token. Login accepts JSON bodies only: a
cross-site HTML form cannot send one, so no other site can log a browser in behind its
user's back (login CSRF).
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, login, logout
from django.db.models import QuerySet
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle

from accounts import selectors, services
from accounts.authentication import ApiTokenAuthentication
from accounts.errors import ValidationError
from accounts.models import ApiToken, AuditEntry, Invitation, Membership, Role, Workspace
from accounts.api_common import StrictSerializer

User = get_user_model()

ROLE_CHOICE_ERRORS = {"invalid_choice": f'"{{input}}" is not a role; allowed: {services.ROLE_NAMES}.'}


# --- Serializers: input (strict) and output ------------------------------------------------------


class LoginSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, write_only=True, trim_whitespace=False, style={"input_type": "password"})


class WorkspaceRoleSerializer(serializers.ModelSerializer):
    role = serializers.ChoiceField(choices=Role.choices, read_only=True, help_text="Your role in the workspace.")

    class Meta:
        model = Workspace
        fields = ["slug", "name", "personal", "role"]


class MeSerializer(serializers.ModelSerializer):
    workspaces = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "username", "email", "is_staff", "workspaces"]

    @extend_schema_field(WorkspaceRoleSerializer(many=True))
    def get_workspaces(self, user: Any) -> list[dict[str, Any]]:
        workspaces = selectors.workspace_list_with_roles(user=user)
        return WorkspaceRoleSerializer(workspaces, many=True).data


class TokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at"]


class TokenCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, help_text="To tell your tokens apart.")


class TokenCreatedSerializer(TokenSerializer):
    key = serializers.CharField(read_only=True, help_text="The key: shown this once, never again.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "key"]


class WorkspaceSerializer(serializers.ModelSerializer):
    role = serializers.ChoiceField(choices=Role.choices, read_only=True, help_text="Your role in the workspace.")

    class Meta:
        model = Workspace
        fields = ["id", "slug", "name", "personal", "role", "max_concurrent_trials", "gpu_hours_per_month", "created_at"]


class WorkspaceCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    slug = serializers.CharField(max_length=60, required=False, help_text="Derived from the name when left out.")


class WorkspaceUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    max_concurrent_trials = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        error_messages={"min_value": "Trials running at once must be at least 1, or null for no limit."},
        help_text="Trials running at once over all studies; null: no limit.",
    )
    gpu_hours_per_month = serializers.FloatField(
        required=False, allow_null=True, help_text="GPU hours a calendar month (UTC), above 0; null: no limit."
    )


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.CharField(source="user.email", read_only=True, help_text="The e-mail address; empty when the user has none.")

    class Meta:
        model = Membership
        fields = ["id", "username", "email", "role", "created_at"]


class MemberCreateSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices, error_messages=ROLE_CHOICE_ERRORS)


class MemberUpdateSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices, error_messages=ROLE_CHOICE_ERRORS)


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.CharField(source="invited_by.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "invited_by", "created_at", "expires_at", "accepted_at"]


class InvitationCreateSerializer(StrictSerializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices, error_messages=ROLE_CHOICE_ERRORS)


class InvitationCreatedSerializer(InvitationSerializer):
    token = serializers.CharField(read_only=True, help_text="The one-time token: shown this once, never again.")

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "token"]


class InvitationAcceptSerializer(StrictSerializer):
    token = serializers.CharField(max_length=200)


class AcceptedSerializer(serializers.ModelSerializer):
    workspace = WorkspaceRoleSerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "workspace", "role"]


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_repr", read_only=True)

    class Meta:
        model = AuditEntry
        fields = ["id", "actor", "action", "target_type", "target_id", "target_repr", "details", "created_at"]


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _workspace_with_role(request: Request, slug: str) -> Workspace:
    return selectors.workspace_get_with_role(user=request.user, slug=slug)


class AccountsView(GenericAPIView):
    """Token first: DRF answers an unauthenticated request with the first authentication
    class's challenge, so a missing, unknown or revoked token is a 401 with
    ``WWW-Authenticate: Token`` (session first would make it a 403)."""

    authentication_classes = [ApiTokenAuthentication, SessionAuthentication]


# --- Login, logout, me ---------------------------------------------------------------------------


class LoginView(GenericAPIView):
    """Session login. Throttled per client (scope ``login``); a user name with too many
    failed logins is locked for a while (429, saying until when)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
    serializer_class = LoginSerializer

    @extend_schema(request=LoginSerializer, responses={200: MeSerializer}, auth=[])
    def post(self, request: Request) -> Response:
        credentials = _valid(LoginSerializer, request)
        try:
            user = services.login_authenticate(request=request._request, **credentials)
        except services.LoginLockedOut as locked:
            wait = max(1, int((locked.until - timezone.now()).total_seconds()))
            raise exceptions.Throttled(wait=wait, detail=locked.message) from None
        login(request._request, user)
        return Response(MeSerializer(user).data)


class NoBodySerializer(StrictSerializer):
    """An action without input: any field sent is refused."""


class LogoutView(AccountsView):
    permission_classes = [AllowAny]
    serializer_class = NoBodySerializer

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(AccountsView):
    serializer_class = MeSerializer

    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)


# --- API tokens ----------------------------------------------------------------------------------


class TokenListView(AccountsView):
    """The user's own tokens; making one is throttled (scope ``token``)."""

    serializer_class = TokenSerializer
    throttle_scope = "token"

    def get_throttles(self) -> list[BaseThrottle]:
        return [ScopedRateThrottle()] if self.request.method == "POST" else []

    def get_queryset(self) -> QuerySet[ApiToken]:
        return selectors.token_list(user=self.request.user)

    @extend_schema(responses=TokenSerializer(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(TokenSerializer(page, many=True).data)

    @extend_schema(request=TokenCreateSerializer, responses={201: TokenCreatedSerializer})
    def post(self, request: Request) -> Response:
        token, key = services.token_create(user=request.user, **_valid(TokenCreateSerializer, request))
        token.key = key  # type: ignore[attr-defined]  (shown once, never stored)
        return Response(TokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)


class TokenDetailView(AccountsView):
    serializer_class = TokenSerializer

    @extend_schema(responses={204: None})
    def delete(self, request: Request, token_id: int) -> Response:
        token = selectors.token_get(user=request.user, token_id=token_id)
        services.token_revoke(user=request.user, token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Workspaces ----------------------------------------------------------------------------------


class WorkspaceListView(AccountsView):
    serializer_class = WorkspaceSerializer

    def get_queryset(self) -> QuerySet[Workspace]:
        return selectors.workspace_list_with_roles(user=self.request.user)

    @extend_schema(responses=WorkspaceSerializer(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(WorkspaceSerializer(page, many=True).data)

    @extend_schema(request=WorkspaceCreateSerializer, responses={201: WorkspaceSerializer})
    def post(self, request: Request) -> Response:
        workspace = services.workspace_create(owner=request.user, **_valid(WorkspaceCreateSerializer, request))
        workspace = _workspace_with_role(request, workspace.slug)
        return Response(WorkspaceSerializer(workspace).data, status=status.HTTP_201_CREATED)


class WorkspaceDetailView(AccountsView):
    """A workspace: anyone in it reads; admins rename it and set its quotas; owners delete it."""

    serializer_class = WorkspaceSerializer

    def get(self, request: Request, slug: str) -> Response:
        return Response(WorkspaceSerializer(_workspace_with_role(request, slug)).data)

    @extend_schema(request=WorkspaceUpdateSerializer, responses=WorkspaceSerializer)
    def patch(self, request: Request, slug: str) -> Response:
        workspace = selectors.workspace_get(user=request.user, slug=slug)
        changes = _valid(WorkspaceUpdateSerializer, request)
        workspace = services.workspace_update(actor=request.user, workspace=workspace, **changes)
        return Response(WorkspaceSerializer(_workspace_with_role(request, workspace.slug)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str) -> Response:
        workspace = selectors.workspace_get(user=request.user, slug=slug)
        services.workspace_delete(actor=request.user, workspace=workspace)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Members -------------------------------------------------------------------------------------


class MemberListView(AccountsView):
    serializer_class = MemberSerializer

    @extend_schema(responses=MemberSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        workspace = selectors.workspace_get(user=request.user, slug=slug)
        memberships = selectors.membership_list(user=request.user, workspace=workspace).order_by("created_at", "id")
        page = self.paginate_queryset(memberships)
        return self.get_paginated_response(MemberSerializer(page, many=True).data)

    @extend_schema(request=MemberCreateSerializer, responses={201: MemberSerializer})
    def post(self, request: Request, slug: str) -> Response:
        workspace = selectors.workspace_get(user=request.user, slug=slug)
        wanted = _valid(MemberCreateSerializer, request)
        user = User.objects.filter(username=wanted["username"], is_active=True).first()
        if user is None:
            raise ValidationError(f"No user named {wanted['username']!r}; invite them by e-mail instead.", field="username")
        try:
            membership = services.membership_add(actor=request.user, workspace=workspace, user=user, role=wanted["role"])
        except ValidationError as error:
            if error.field == "user":  # the service's name for what this API calls username
                raise ValidationError(error.message, field="username") from None
            raise
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(AccountsView):
    """Admins change roles and remove members; anyone may remove themselves (leave)."""

    serializer_class = MemberSerializer

    def _membership(self, request: Request, slug: str, membership_id: int) -> Membership:
        workspace = selectors.workspace_get(user=request.user, slug=slug)
        return selectors.membership_get(user=request.user, workspace=workspace, membership_id=membership_id)

    @extend_schema(request=MemberUpdateSerializer, responses=MemberSerializer)
    def patch(self, request: Request, slug: str, membership_id: int) -> Response:
        membership = self._membership(request, slug, membership_id)
        role = _valid(MemberUpdateSerializer, request)["role"]
        membership = services.membership_change_role(actor=request.user, membership=membership, role=role)
        return Response(MemberSerializer(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, membership_id: int) -> Response:
        membership = self._membership(request, slug, membership_id)
        services.membership_remove(actor=request.user, membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Invitations ---------------------------------------------------------------------------------


class InvitationListView(AccountsView):
    """Admins list and send invitations; the one-time token is in the POST answer only."""

    serializer_class = InvitationSerializer

    @extend_schema(responses=InvitationSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        workspace = selectors.workspace_get(user=request.user, slug=slug)
        services.require_role(user=request.user, workspace=workspace, at_least=Role.ADMIN)
        page = self.paginate_queryset(selectors.invitation_list(user=request.user, workspace=workspace))
        return self.get_paginated_response(InvitationSerializer(page, many=True).data)

    @extend_schema(request=InvitationCreateSerializer, responses={201: InvitationCreatedSerializer})
    def post(self, request: Request, slug: str) -> Response:
        workspace = selectors.workspace_get(user=request.user, slug=slug)
        invitation, token = services.member_invite(
            actor=request.user, workspace=workspace, **_valid(InvitationCreateSerializer, request)
        )
        invitation.token = token  # type: ignore[attr-defined]  (shown once, stored hashed)
        return Response(InvitationCreatedSerializer(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailView(AccountsView):
    serializer_class = InvitationSerializer

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, invitation_id: int) -> Response:
        workspace = selectors.workspace_get(user=request.user, slug=slug)
        invitation = selectors.invitation_get(user=request.user, workspace=workspace, invitation_id=invitation_id)
        services.invitation_revoke(actor=request.user, invitation=invitation)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationAcceptView(AccountsView):
    """The invitee (logged in) joins with the token; unknown or used tokens are a 404."""

    serializer_class = InvitationAcceptSerializer

    @extend_schema(request=InvitationAcceptSerializer, responses=AcceptedSerializer)
    def post(self, request: Request) -> Response:
        membership = services.invitation_accept(user=request.user, **_valid(InvitationAcceptSerializer, request))
        membership.workspace = _workspace_with_role(request, membership.workspace.slug)
        return Response(AcceptedSerializer(membership).data)


# --- Audit log -----------------------------------------------------------------------------------


class AuditListView(AccountsView):
    """The workspace's audit log, newest first (admins and owners)."""

    serializer_class = AuditEntrySerializer

    @extend_schema(responses=AuditEntrySerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        workspace = selectors.workspace_get(user=request.user, slug=slug)
        services.require_role(user=request.user, workspace=workspace, at_least=Role.ADMIN)
        page = self.paginate_queryset(selectors.audit_list(user=request.user, workspace=workspace))
        return self.get_paginated_response(AuditEntrySerializer(page, many=True).data)


# --- RunPod credentials (write-only key) ---------------------------------------------------------


class CloudCredentialsSetSerializer(StrictSerializer):
    api_key = serializers.CharField(max_length=200, write_only=True, trim_whitespace=True, style={"input_type": "password"})
    endpoint_id = serializers.CharField(max_length=100)
    gpu_type = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")


class CloudCredentialsSerializer(serializers.Serializer):
    """What the API says about a workspace's RunPod credentials: never the key."""

    configured = serializers.BooleanField()
    endpoint_id = serializers.CharField(allow_null=True)
    gpu_type = serializers.CharField(allow_null=True)
    api_key_set = serializers.BooleanField()
    updated_at = serializers.DateTimeField(allow_null=True)


def _cloud_credentials_answer(credentials: Any) -> dict[str, Any]:
    if credentials is None:
        data = {"configured": False, "endpoint_id": None, "gpu_type": None, "api_key_set": False, "updated_at": None}
    else:
        data = {
            "configured": True,
            "endpoint_id": credentials.runpod_endpoint_id,
            "gpu_type": credentials.gpu_type or None,
            "api_key_set": bool(credentials.runpod_api_key),
            "updated_at": credentials.updated_at,
        }
    return CloudCredentialsSerializer(data).data


class CloudCredentialsView(AccountsView):
    """The workspace's RunPod key, endpoint and GPU type (admins and owners). The key is
    write-only: PUT sets it, GET and PUT answer only whether it is set, DELETE forgets it."""

    serializer_class = CloudCredentialsSerializer

    def get_object(self) -> Workspace:  # what OPTIONS checks a PUT against
        return selectors.workspace_get(user=self.request.user, slug=self.kwargs["slug"])

    def get(self, request: Request, slug: str) -> Response:
        workspace = selectors.workspace_get(user=request.user, slug=slug)
        return Response(_cloud_credentials_answer(services.cloud_credentials_get(actor=request.user, workspace=workspace)))

    @extend_schema(request=CloudCredentialsSetSerializer, responses=CloudCredentialsSerializer)
    def put(self, request: Request, slug: str) -> Response:
        workspace = selectors.workspace_get(user=request.user, slug=slug)
        wanted = _valid(CloudCredentialsSetSerializer, request)
        credentials = services.cloud_credentials_set(actor=request.user, workspace=workspace, **wanted)
        return Response(_cloud_credentials_answer(credentials))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str) -> Response:
        workspace = selectors.workspace_get(user=request.user, slug=slug)
        services.cloud_credentials_delete(actor=request.user, workspace=workspace)
        return Response(status=status.HTTP_204_NO_CONTENT)


urlpatterns = [
    path("auth/login/", LoginView.as_view(), name="api-login"),
    path("auth/logout/", LogoutView.as_view(), name="api-logout"),
    path("me/", MeView.as_view(), name="api-me"),
    path("tokens/", TokenListView.as_view(), name="api-tokens"),
    path("tokens/<int:token_id>/", TokenDetailView.as_view(), name="api-token"),
    path("workspaces/", WorkspaceListView.as_view(), name="api-workspaces"),
    path("workspaces/<slug:slug>/", WorkspaceDetailView.as_view(), name="api-workspace"),
    path("workspaces/<slug:slug>/members/", MemberListView.as_view(), name="api-members"),
    path("workspaces/<slug:slug>/members/<int:membership_id>/", MemberDetailView.as_view(), name="api-member"),
    path("workspaces/<slug:slug>/invitations/", InvitationListView.as_view(), name="api-invitations"),
    path(
        "workspaces/<slug:slug>/invitations/<int:invitation_id>/",
        InvitationDetailView.as_view(),
        name="api-invitation",
    ),
    path("invitations/accept/", InvitationAcceptView.as_view(), name="api-invitation-accept"),
    path("workspaces/<slug:slug>/audit/", AuditListView.as_view(), name="api-audit"),
    path("workspaces/<slug:slug>/runpod/", CloudCredentialsView.as_view(), name="api-runpod"),
]
