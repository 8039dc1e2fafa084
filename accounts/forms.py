"""Forms of the accounts pages. They parse input only: every rule (roles, owners, quotas,
token names, lockout) is checked by ``accounts.services``, whose refusals the views attach
to the field they name (``add_service_error``)."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm

from accounts import services
from accounts.errors import ApplicationError
from accounts.models import Role

User = get_user_model()


def add_service_error(form: forms.Form, error: ApplicationError, *, aliases: dict[str, str] | None = None) -> None:
    """Show a service's refusal next to the field it names (``aliases`` maps the service's
    field name to the form's), or above the form when the form has no such field."""
    field = (aliases or {}).get(error.field or "", error.field)
    form.add_error(field if field in form.fields else None, error.message)


class LoginForm(AuthenticationForm):
    """Django's login form, authenticating through ``services.login_authenticate`` so that
    the page and the API share one lockout per user name."""

    locked_out = False

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            try:
                self.user_cache = services.login_authenticate(request=self.request, username=username, password=password)
            except services.LoginLockedOut as locked:
                self.locked_out = True
                raise forms.ValidationError(locked.message, code="locked_out") from None
            except ApplicationError as error:
                raise forms.ValidationError(error.message, code="invalid_login") from None
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


class SignupForm(UserCreationForm):
    email = forms.EmailField(
        required=False, help_text="Optional. Where your team can reach you; not shown to anyone outside it."
    )

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


ROLE_CHOICES = Role.choices


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, label="User name", help_text="Someone who already has an account.")
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.MEMBER)


class InvitationForm(forms.Form):
    email = forms.EmailField(max_length=254, label="E-mail address")
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.MEMBER)


class WorkspaceSettingsForm(forms.Form):
    name = forms.CharField(max_length=100, label="Workspace name")
    max_concurrent_trials = forms.IntegerField(
        required=False, label="Trials running at once", help_text="Over all studies of the workspace. Empty: no limit."
    )
    gpu_hours_per_month = forms.FloatField(
        required=False,
        label="GPU hours per month",
        help_text="A calendar month (UTC), over all studies; dispatching stops when it is spent. Empty: no limit.",
    )


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, label="Token name", help_text="To tell your tokens apart, e.g. “laptop”.")
