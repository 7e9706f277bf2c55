"""Forms of the Microsoft Sync pages. Help texts use the seed's own explanations."""

import re
import uuid
from dataclasses import dataclass

from django import forms
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from onex.models import AbsenceReason, Subscription

from . import outbound
from .models import DAYS_AHEAD_MAX, DAYS_AHEAD_MIN, Integration, SyncedUser, SyncRule
from .rule_text import SHOW_AS_CHOICES, WEEKDAY_CHOICES

SETTINGS_HELP = {
    "name": _("The name shown in the list of Outlook integrations."),
    "days_ahead": _("How many days ahead bookings are synced (14 by default)."),
    "active": _("Whether the integration syncs at all."),
    "plugin_enabled": _(
        "End users can choose sync rules themselves with the Outlook plugin; when on, the "
        "users' own choices apply."
    ),
    "plugin_defaults_only": _(
        "Users may not set their own defaults, only the default configuration set by the "
        "admin; they can still change it for each booking they create."
    ),
    "all_meetings_private": _(
        "When on, the title of synced Outlook bookings is not shown in One X (private bookings "
        "are never synced)."
    ),
}


def unique_name(company, base: str) -> str:
    """`base`, or "base 2", "base 3" … : the first name none of the company's integrations has."""
    taken = {name.lower() for name in company.integrations.values_list("name", flat=True)}
    return next(
        name
        for name in (base if n == 1 else f"{base} {n}" for n in range(1, len(taken) + 2))
        if name.lower() not in taken
    )


class UniqueNameMixin:
    """An integration's name is unique within its company (the form's instance carries it)."""

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        company_id = self.instance.company_id
        others = Integration.objects.filter(company_id=company_id, name__iexact=name)
        if company_id and others.exclude(pk=self.instance.pk).exists():
            suggestion = unique_name(self.instance.company, name)
            raise forms.ValidationError(
                _("Another integration is already called %(name)s. Try %(suggestion)s."),
                params={"name": name, "suggestion": suggestion},
            )
        return name


class IntegrationSettingsForm(UniqueNameMixin, forms.ModelForm):
    class Meta:
        model = Integration
        fields = [
            "name",
            "days_ahead",
            "active",
            "plugin_enabled",
            "plugin_defaults_only",
            "all_meetings_private",
        ]
        labels = {
            "name": _("Name"),
            "days_ahead": _("Number of days"),
            "active": _("Active"),
            "plugin_enabled": _("Plugin enabled"),
            "plugin_defaults_only": _("Restrict to default configuration"),
            "all_meetings_private": _("All meetings private"),
        }
        help_texts = SETTINGS_HELP

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One message naming the range, for 0, -3, 61 and "x" alike (Django's own say only
        # "≥ 0" from the form field or "≥ 1" from the model, whichever fails first).
        days = self.fields["days_ahead"]
        message = str(_("Enter %(min)d–%(max)d days.")) % {
            "min": DAYS_AHEAD_MIN,
            "max": DAYS_AHEAD_MAX,
        }
        days.error_messages.update(min_value=message, max_value=message, invalid=message)
        days.widget.attrs.update(min=DAYS_AHEAD_MIN, max=DAYS_AHEAD_MAX)


class EwsIntegrationForm(UniqueNameMixin, forms.ModelForm):
    """Exchange On Prem: where EWS answers and the impersonation service account."""

    ews_url = forms.URLField(
        label=_("EWS URL"),
        assume_scheme="https",
        help_text=_(
            "The Exchange web service address, e.g. https://mail.example.se/EWS/Exchange.asmx "
            "(Get-WebServicesVirtualDirectory shows it)."
        ),
    )
    ews_password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("The service account's password. It is stored encrypted and never shown."),
    )

    class Meta:
        model = Integration
        fields = ["name", "ews_url", "ews_username", "ews_password"]
        labels = {
            "name": _("Name"),
            "ews_username": _("Service account"),
        }
        help_texts = {
            "ews_username": _(
                "The dedicated impersonation user, e.g. telenor_mss_user or DOMAIN\\user "
                "(delegate is not supported)."
            ),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "name" in self.fields and not self.instance.pk:
            base = str(_("Exchange On Prem"))
            company = self.instance.company if self.instance.company_id else None
            # A new instance's empty name would win over a field initial.
            self.initial["name"] = unique_name(company, base) if company else base
        self.fields["ews_username"].required = True

    def clean_ews_url(self):
        url = self.cleaned_data["ews_url"]
        try:
            outbound.check_url(url)  # again at every connection, after DNS resolution
        except outbound.RefusedURL as refused:
            raise forms.ValidationError(refused.message) from None
        return url

    def clean_ews_username(self):
        username = self.cleaned_data["ews_username"].strip()
        if any(char.isspace() for char in username):
            raise forms.ValidationError(_("The service account name cannot contain spaces."))
        return username


class EwsConnectionForm(EwsIntegrationForm):
    """Changing an On Prem integration's connection: an empty password keeps the stored one."""

    class Meta(EwsIntegrationForm.Meta):
        fields = ["ews_url", "ews_username", "ews_password"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["ews_password"].required = False
        self.fields["ews_password"].help_text = _(
            "Leave empty to keep the stored password. It is stored encrypted and never shown."
        )

    def clean_ews_password(self):
        return self.cleaned_data["ews_password"] or self.instance.ews_password


def _split_words(value: str) -> list[str]:
    return [word.strip() for word in value.split(",") if word.strip()]


class SyncRuleForm(forms.ModelForm):
    """One admin rule: conditions (all optional) and what happens when they all match."""

    show_as = forms.TypedMultipleChoiceField(
        label=_("Show as"),
        choices=SHOW_AS_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("The booking's Show as in Outlook. None ticked: any."),
    )
    all_day = forms.NullBooleanField(
        label=_("All-day bookings"),
        required=False,
        widget=forms.Select(
            choices=[
                ("unknown", _("Any")),
                ("true", _("Only all-day")),
                ("false", _("Not all-day")),
            ]
        ),
    )
    weekdays = forms.TypedMultipleChoiceField(
        label=_("Weekdays"),
        choices=WEEKDAY_CHOICES,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every day."),
    )
    categories = forms.CharField(
        label=_("Categories"),
        required=False,
        help_text=_("Outlook categories, separated by commas. Empty: any."),
    )
    subject_keywords = forms.CharField(
        label=_("Subject contains"),
        required=False,
        help_text=_("Words separated by commas. Only usable when All meetings private is off."),
    )

    class Meta:
        model = SyncRule
        fields = [
            "show_as",
            "all_day",
            "weekdays",
            "time_from",
            "time_to",
            "min_duration_minutes",
            "categories",
            "subject_keywords",
            "action",
            "reason",
            "open_diversion",
        ]
        labels = {
            "time_from": _("From (time)"),
            "time_to": _("To (time)"),
            "min_duration_minutes": _("Minimum duration (minutes)"),
            "action": _("Then"),
            "reason": _("Absence reason"),
            "open_diversion": _("Open diversion (the phone rings first)"),
        }
        widgets = {
            "time_from": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "time_to": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }

    def __init__(self, *args, integration, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.integration = integration
        self.integration = integration
        self.fields["reason"].queryset = AbsenceReason.objects.filter(
            company_id=integration.company_id, active=True
        )
        self.fields["reason"].empty_label = "—"
        if self.instance.pk:
            self.initial["categories"] = ", ".join(self.instance.categories)
            self.initial["subject_keywords"] = ", ".join(self.instance.subject_keywords)
        if integration.all_meetings_private:
            self.fields["subject_keywords"].disabled = True
        self.fields["min_duration_minutes"].widget.attrs["min"] = 1

    def clean_categories(self):
        return _split_words(self.cleaned_data["categories"])

    def clean_subject_keywords(self):
        if self.integration.all_meetings_private:
            return list(self.instance.subject_keywords or [])
        return _split_words(self.cleaned_data["subject_keywords"] or "")

    def clean(self):
        cleaned = super().clean()
        time_from, time_to = cleaned.get("time_from"), cleaned.get("time_to")
        # An end before the start runs overnight (18:00–07:00); equal times say nothing.
        if time_from and time_to and time_from == time_to:
            self.add_error(
                "time_to",
                _(
                    "The end time is the same as the start time. Choose another end time; "
                    "an end before the start runs overnight (18:00–07:00)."
                ),
            )
        reason = cleaned.get("reason")
        if (
            reason
            and cleaned.get("action") == SyncRule.Action.DIVERT
            and not reason.diversion_allowed
        ):
            self.add_error("reason", _("One X does not allow a diversion with this reason."))
        return cleaned

    def build(self) -> SyncRule:
        """The rule as edited, unsaved (for the preview); call after is_valid()."""
        return self.save(commit=False)


class AddUserForm(forms.Form):
    email = forms.EmailField(
        label=_("Email address"),
        help_text=_("Only One X subscriptions of the company can be added."),
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )

    def __init__(self, *args, integration, **kwargs):
        super().__init__(*args, **kwargs)
        self.integration = integration
        self.subscription = None

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        problem, subscription = check_email(self.integration, email)
        if problem:
            raise forms.ValidationError(problem)
        self.subscription = subscription
        return email


def check_email(integration, email, *, known=None, taken=None):
    """Why `email` cannot be synced by `integration` (or None) and its One X subscription.

    `known` (email → subscription) and `taken` (email → (integration id, name) of the
    company's integration that already syncs it) let a CSV import answer thousands of lines
    from two queries per chunk. An address of another company's subscription gets the same
    answer as an unknown one: the form must not tell which addresses exist elsewhere.
    """
    if known is None:
        subscription = (
            Subscription.objects.filter(company_id=integration.company_id, email=email)
            .order_by("-active")
            .first()
        )
    else:
        subscription = known.get(email)
    if subscription is None:
        return _("No One X subscription in the company has the address %(email)s.") % {
            "email": email
        }, None
    if not subscription.active:
        return _("The One X subscription for %(email)s is deactivated.") % {"email": email}, None
    if taken is None:
        taken = taken_emails(integration, [email])
    holder = taken.get(email)
    if holder and holder[0] == integration.pk:
        return _("%(email)s is already added.") % {"email": email}, None
    if holder:
        return _("%(email)s is already synced by the integration %(name)s.") % {
            "email": email,
            "name": holder[1],
        }, None
    return None, subscription


def taken_emails(integration, emails) -> dict[str, tuple[int, str]]:
    """Which of `emails` some integration of the company already syncs, and which one."""
    rows = SyncedUser.objects.filter(
        integration__company_id=integration.company_id, email__in=list(emails)
    ).values_list("email", "integration_id", "integration__name")
    return {email: (integration_id, name) for email, integration_id, name in rows}


class ImportUsersForm(forms.Form):
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_("One email address per line (first column); a header line is allowed."),
    )

    MAX_BYTES = 5 * 1024 * 1024

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > self.MAX_BYTES:
            raise forms.ValidationError(_("The file is too large (at most 5 MB)."))
        try:
            text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError(_("The file must be UTF-8 text.")) from None
        return text


@dataclass
class ImportLine:
    number: int
    email: str
    ok: bool
    message: str


def read_import_lines(text: str) -> list[tuple[int, str]]:
    """(line number, email) for every non-empty line; a first line without "@" is a header.

    The first column is the address, whatever the separator (comma, semicolon or tab): an
    address never contains one.
    """
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = re.split(r"[,;\t]", line, maxsplit=1)[0].strip().strip('"').strip()
        if not value or (number == 1 and "@" not in value):
            continue
        lines.append((number, value))
    return lines


def validate_import_email(value: str) -> str | None:
    """The same words as the add form's email field: both come from Django's validator."""
    try:
        validate_email(value)
    except forms.ValidationError as invalid:
        return str(invalid.messages[0])
    return None


class UserSourceForm(forms.Form):
    """Katalog Synk: whether the users list follows groups (calendarsync/membership.py)."""

    user_source = forms.ChoiceField(
        label=_("Where users come from"),
        choices=Integration.UserSource.choices,
        widget=forms.RadioSelect,
    )


class FollowGroupForm(forms.Form):
    """A group from the search's results (its id and name as the directory gave them). The id
    goes into the provider's requests, so it must look like one: an Entra ID group's is a
    GUID, a distribution group's its email address."""

    provider_id = forms.CharField(max_length=320)
    name = forms.CharField(max_length=256)

    def __init__(self, *args, kind: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind

    def clean_provider_id(self):
        value = self.cleaned_data["provider_id"].strip()
        try:
            if self.kind == Integration.Kind.GRAPH:
                return str(uuid.UUID(value))
            validate_email(value)
        except (ValueError, forms.ValidationError):
            raise forms.ValidationError(_("This is not a group from the search.")) from None
        return value.lower()
