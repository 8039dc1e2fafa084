"""The accounts pages, under /accounts/ (docs/portal.md; views in ``accounts.views``)."""
from django.urls import path

from accounts import views

app_name = "accounts"
urlpatterns = [
    path("login/", views.PortalLoginView.as_view(), name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("password/", views.PortalPasswordChangeView.as_view(), name="password-change"),
    path("signup/", views.signup, name="signup"),
    path("invitations/accept/", views.accept_invitation, name="accept-invitation"),
    path("workspace/", views.switch_workspace, name="switch-workspace"),
    path("workspaces/<slug:slug>/members/", views.members, name="members"),
    path("tokens/", views.tokens, name="tokens"),
]
