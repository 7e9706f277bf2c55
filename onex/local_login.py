"""The password form: for Telenor staff, and outside production the printed demo admin.

Company admins sign in with Telenor ID; a password account of theirs is refused with a hint.
"""

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


class LocalLoginForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "telenor_id_only": _("Company administrators log in with Telenor ID (the button above)."),
    }

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not (user.is_staff or user.get_username() in settings.LOCAL_LOGIN_USERNAMES):
            raise ValidationError(self.error_messages["telenor_id_only"], code="telenor_id_only")
