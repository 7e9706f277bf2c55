import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from onex.models import AbsenceReason, Company, Subscription

from . import activity_messages, actors
from .actors import ActorKind
from .crypto import EncryptedTextField

DAYS_AHEAD_MIN, DAYS_AHEAD_MAX = 1, 60


def validate_printable(value: str) -> None:
    """No control characters (a line break in a name would end up in headers and files)."""
    if not value.isprintable():
        raise ValidationError(
            _("Use letters, digits, spaces and punctuation only (no line breaks or tabs)."),
            code="control_characters",
        )


class Forwarding(models.TextChoices):
    INFO = "info", _("Absence info")
    DIVERT = "divert", _("Diversion")


class Integration(models.Model):
    """One connection to one Exchange organisation (an "instans" in the UI)."""

    company_lookup = "company"

    class Kind(models.TextChoices):
        GRAPH = "graph", _("Exchange Online / O365")
        EWS = "ews", _("Exchange On Prem")

    class Status(models.TextChoices):
        """An integration's life (ARCHITECTURE.md); each change is one method below."""

        PENDING_CONSENT = "pending_consent", _("awaiting consent")
        # Exchange On Prem: saved, but the EWS connection has not been proven yet.
        UNVERIFIED = "unverified", _("not verified yet")
        CONNECTED = "connected", _("connected")
        PAUSED = "paused", pgettext_lazy("integration status", "paused")
        # Consent revoked, credentials rejected or permissions removed: `attention` says which.
        NEEDS_ATTENTION = "needs_attention", _("needs attention")
        ERROR = "error", _("error")  # transient: the next good run clears it
        REMOVING = "removing", _("being removed")

    class Attention(models.TextChoices):
        CONSENT_REVOKED = "consent_revoked", _("consent revoked")
        CREDENTIALS_REJECTED = "credentials_rejected", _("credentials rejected")
        PERMISSIONS_REMOVED = "permissions_removed", _("permissions removed")
        SERVER_UNTRUSTED = "server_untrusted", _("server certificate not trusted")

    # Statuses in which bookings flow (with `active` on).
    SYNCING = (Status.CONNECTED, Status.ERROR)
    # Statuses a proven connection (a consent, a verified EWS login) leaves.
    UNPROVEN = (Status.PENDING_CONSENT, Status.UNVERIFIED, Status.NEEDS_ATTENTION)

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="integrations")
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind)
    name = models.CharField(_("name"), max_length=100, validators=[validate_printable])
    active = models.BooleanField(_("active"), default=True)
    days_ahead = models.PositiveSmallIntegerField(
        _("number of days"),
        default=14,
        validators=[MinValueValidator(DAYS_AHEAD_MIN), MaxValueValidator(DAYS_AHEAD_MAX)],
    )
    plugin_enabled = models.BooleanField(_("plugin enabled"), default=True)
    plugin_defaults_only = models.BooleanField(
        _("restrict to default configuration"), default=False
    )
    all_meetings_private = models.BooleanField(_("all meetings private"), default=True)
    status = models.CharField(
        _("status"), max_length=20, choices=Status, default=Status.PENDING_CONSENT
    )
    attention = models.CharField(
        _("needs attention because"), max_length=30, choices=Attention, blank=True
    )
    last_error = models.TextField(_("last error"), blank=True)
    # Exchange Online (Graph)
    tenant_id = models.CharField(_("tenant id"), max_length=64, blank=True)
    consented_at = models.DateTimeField(_("consent given"), null=True, blank=True)
    # Exchange on-premises (EWS)
    ews_url = models.URLField(_("EWS URL"), blank=True)
    ews_username = models.CharField(_("service account"), max_length=200, blank=True)
    ews_password = EncryptedTextField(_("password"), blank=True)
    # The Exchange build a passing connection test found: later connections skip the probe.
    ews_build = models.CharField(_("Exchange build"), max_length=40, blank=True)

    class UserSource(models.TextChoices):
        """Katalog Synk: where the users list comes from (calendarsync/membership.py)."""

        MANUAL = "manual", _("Add users by hand")
        GROUPS = "groups", _("Sync users from groups (users added by hand stay)")
        GROUPS_ONLY = "groups_only", _("Groups only (users in no group are removed)")

    user_source = models.CharField(
        _("users"), max_length=12, choices=UserSource, default=UserSource.MANUAL
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("integration")
        verbose_name_plural = _("integrations")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(days_ahead__gte=DAYS_AHEAD_MIN) & Q(days_ahead__lte=DAYS_AHEAD_MAX),
                name="integration_days_ahead_range",
            ),
            models.UniqueConstraint(fields=["company", "name"], name="integration_name"),
        ]

    def __str__(self):
        return self.name

    @property
    def syncing(self) -> bool:
        """Whether bookings should flow now: active, connected, not paused or stopped."""
        return self.active and self.status in self.SYNCING

    # ----- the state machine. Each transition is one conditional UPDATE (so concurrent
    # workers cannot both make it) and records one Activity only when it happened.

    def _transition(self, sources, event, *, actor, activity=None, **fields) -> bool:
        """`activity` holds Activity.record's keywords beyond event and actor."""
        fields.setdefault("updated_at", timezone.now())
        changed = Integration.objects.filter(pk=self.pk, status__in=sources).update(**fields)
        if changed:
            # Expressions (the Case in pause) are read back as values.
            self.refresh_from_db(fields=[f for f in fields if f != "updated_at"])
            Activity.record(self, event, actor=actor, **(activity or {}))
        return bool(changed)

    def connect(
        self, *, actor, event="connected", message_id=None, tenant_id: str | None = None
    ) -> bool:
        """Consent given or connection proven: connected, or paused if Aktiv is off."""
        fields = {"attention": "", "last_error": "", "consented_at": timezone.now()}
        if tenant_id is not None:
            fields["tenant_id"] = tenant_id
        target = self.Status.CONNECTED if self.active else self.Status.PAUSED
        return self._transition(
            [*self.UNPROVEN, self.Status.ERROR],
            event,
            actor=actor,
            activity={"message_id": message_id or event, "subject": Activity.Subject.INTEGRATION},
            status=target,
            **fields,
        )

    def _active_change(self, after: bool) -> dict:
        return {
            "subject": Activity.Subject.SETTING,
            "changes": [{"field": "active", "before": not after, "after": after}],
        }

    def pause(self, *, actor) -> bool:
        """Aktiv off. A connected integration becomes paused; one still waiting for consent
        keeps waiting (and is paused once connected). The caller removes its entries."""
        if not self.active:
            return False
        return self._transition(
            [s for s in self.Status if s != self.Status.REMOVING],
            "paused",
            actor=actor,
            activity=self._active_change(False),
            active=False,
            status=Case(
                When(status__in=self.SYNCING, then=Value(self.Status.PAUSED)),
                default=F("status"),
            ),
        )

    def resume(self, *, actor) -> bool:
        """Aktiv on: a paused integration is connected again (the caller resyncs it)."""
        if self.active:
            return False
        return self._transition(
            [s for s in self.Status if s != self.Status.REMOVING],
            "resumed",
            actor=actor,
            activity=self._active_change(True),
            active=True,
            status=Case(
                When(status=self.Status.PAUSED, then=Value(self.Status.CONNECTED)),
                default=F("status"),
            ),
        )

    def needs_attention(self, error) -> bool:
        """The organisation no longer lets the app in (`error` is a providers AccessLost):
        syncing stops until an administrator acts. Only the first caller records it."""
        attention = self.Attention(error.reason)
        # Exchange Online's answer comes from Microsoft; an On Prem server's is our own check.
        actor = actors.MICROSOFT if self.kind == self.Kind.GRAPH else actors.SYSTEM
        return self._transition(
            self.SYNCING,
            attention.value,
            actor=actor,
            activity={
                "params": {"code": error.code or attention.value},
                "level": Activity.Level.ERROR,
                "subject": Activity.Subject.INTEGRATION,
            },
            status=self.Status.NEEDS_ATTENTION,
            attention=attention,
            last_error=str(error)[:500],
        )

    def mark_error(self, message: str) -> bool:
        """A passing failure of the whole integration (the provider could not be reached)."""
        return self._transition(
            [self.Status.CONNECTED],
            "error",
            actor=actors.SYSTEM,
            activity={
                "message_id": "integration_error",
                "params": {"error": message},
                "level": Activity.Level.WARNING,
            },
            status=self.Status.ERROR,
            last_error=message[:500],
        )

    def clear_error(self) -> bool:
        """A good run after a passing failure."""
        return self._transition(
            [self.Status.ERROR],
            "recovered",
            actor=actors.SYSTEM,
            status=self.Status.CONNECTED,
            last_error="",
        )

    def start_removal(self, *, actor) -> bool:
        return self._transition(
            [s for s in self.Status if s != self.Status.REMOVING],
            "removing",
            actor=actor,
            activity={"subject": Activity.Subject.INTEGRATION, "subject_label": self.name},
            status=self.Status.REMOVING,
            active=False,
        )


class SyncRule(models.Model):
    """An admin rule: when a booking matches every set condition, the action decides.

    Empty conditions match everything. Rules are tried in `position` order; the first match
    wins, and bookings no rule matches fall through to the default template.
    """

    company_lookup = "integration__company"

    class Action(models.TextChoices):
        SKIP = "skip", _("Do not sync")
        INFO = "info", _("Absence info")
        DIVERT = "divert", _("Diversion")

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveIntegerField(_("position"), default=0)
    # Conditions
    show_as = models.JSONField(_("show as"), default=list, blank=True)
    all_day = models.BooleanField(_("all day"), null=True, blank=True)
    categories = models.JSONField(_("categories"), default=list, blank=True)
    min_duration_minutes = models.PositiveIntegerField(_("minimum duration"), null=True, blank=True)
    weekdays = models.JSONField(_("weekdays"), default=list, blank=True)
    time_from = models.TimeField(_("from"), null=True, blank=True)
    time_to = models.TimeField(_("to"), null=True, blank=True)
    subject_keywords = models.JSONField(_("subject keywords"), default=list, blank=True)
    # Action
    action = models.CharField(_("action"), max_length=10, choices=Action, default=Action.INFO)
    reason = models.ForeignKey(
        AbsenceReason,
        verbose_name=_("absence reason"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    open_diversion = models.BooleanField(_("open diversion"), default=False)

    class Meta:
        verbose_name = _("sync rule")
        verbose_name_plural = _("sync rules")
        ordering = ["integration", "position", "id"]

    def __str__(self):
        return f"{self.integration} #{self.position}: {self.get_action_display()}"

    def clean(self):
        if self.action != self.Action.SKIP and self.reason_id is None:
            raise ValidationError({"reason": _("Choose an absence reason.")})
        if self.reason_id and self.reason.company_id != self.integration.company_id:
            raise ValidationError({"reason": _("The absence reason belongs to another company.")})
        if self.open_diversion and self.action != self.Action.DIVERT:
            raise ValidationError({"open_diversion": _("Open diversion requires Diversion.")})


class SyncedUserQuerySet(models.QuerySet):
    def may_sync(self):
        """Users whose bookings flow now: a syncing integration and a live One X subscription."""
        return self.filter(
            integration__active=True,
            integration__status__in=Integration.SYNCING,
            subscription__active=True,
        )


class SyncedUser(models.Model):
    """A mailbox that an integration keeps in step with One X."""

    company_lookup = "integration__company"

    class State(models.TextChoices):
        PENDING = "pending", _("waiting for first sync")
        OK = "ok", _("synced")
        ERROR = "error", _("error")

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="users")
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="synced_users"
    )
    email = models.EmailField(_("email"))
    state = models.CharField(_("state"), max_length=10, choices=State, default=State.PENDING)
    last_synced_at = models.DateTimeField(_("last synced"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    # The add-in's personal default profile: {"reason": code, "forwarding": "info"|"divert",
    # "open_diversion": bool}, or empty when the user has none.
    personal_profile = models.JSONField(_("personal default profile"), default=dict, blank=True)
    # Exchange On Prem: the add-in user's identity (SHA-256 of the identity token's msexchuid
    # and metadata URL), stored once they proved this mailbox is theirs (calendarsync.addin).
    addin_identity = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    # Sync bookkeeping: a requested-at stamp collapses bursts of triggers into one run, a
    # started-at stamp is the per-mailbox lock (claimed with a conditional UPDATE), held by a
    # lease its run renews (calendarsync.claims).
    sync_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    sync_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    sync_renewed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Added by Katalog Synk (a member of a followed group), not by hand: it goes when it
    # leaves every group.
    from_groups = models.BooleanField(_("from groups"), default=False)
    created_at = models.DateTimeField(_("added"), auto_now_add=True)

    objects = SyncedUserQuerySet.as_manager()

    class Meta:
        verbose_name = _("synced user")
        verbose_name_plural = _("synced users")
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "email"], name="synceduser_email"),
        ]
        indexes = [
            # The users tab filters an integration's users by state (errors first).
            models.Index(fields=["integration", "state"], name="synceduser_state"),
        ]

    def __str__(self):
        return self.email

    def save(self, *args, **kwargs):
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)

    def clean(self):
        if (
            self.subscription_id
            and self.integration_id
            and self.subscription.company_id != self.integration.company_id
        ):
            raise ValidationError(
                {"subscription": _("The One X subscription belongs to another company.")}
            )


class MailboxSubscription(models.Model):
    """A provider change-notification subscription for one synced mailbox."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        FAILED = "failed", _("failed")

    synced_user = models.OneToOneField(
        SyncedUser, on_delete=models.CASCADE, related_name="mailbox_subscription"
    )
    provider_subscription_id = models.CharField(max_length=200, unique=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    watermark = models.TextField(_("watermark"), blank=True)
    client_state = EncryptedTextField(_("client state"), blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status, default=Status.ACTIVE)
    last_error = models.TextField(_("last error"), blank=True)
    last_notification_at = models.DateTimeField(_("last notification"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("mailbox subscription")
        verbose_name_plural = _("mailbox subscriptions")
        indexes = [
            # Renewal job: subscriptions expiring soonest first.
            models.Index(fields=["expires_at"], name="mailboxsub_expires"),
        ]

    def __str__(self):
        return self.provider_subscription_id


class Booking(models.Model):
    """What this product last wrote to One X for one booking (or occurrence)."""

    synced_user = models.ForeignKey(SyncedUser, on_delete=models.CASCADE, related_name="bookings")
    external_id = models.CharField(max_length=64)
    provider_item_id = models.CharField(max_length=512)
    series_master_id = models.CharField(max_length=512, blank=True)
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    all_day = models.BooleanField(_("all day"), default=False)
    forwarding = models.CharField(_("forwarding"), max_length=10, choices=Forwarding)
    open_diversion = models.BooleanField(_("open diversion"), default=False)
    reason_code = models.CharField(_("absence reason"), max_length=32)
    return_at = models.DateTimeField(_("return time"))
    note = models.CharField(_("note"), max_length=100, blank=True)
    decided_by = models.CharField(_("decided by"), max_length=100, blank=True)
    fingerprint = models.CharField(max_length=64)
    pushed_at = models.DateTimeField(_("pushed"))

    class Meta:
        verbose_name = _("booking")
        verbose_name_plural = _("bookings")
        ordering = ["start"]
        constraints = [
            models.UniqueConstraint(
                fields=["synced_user", "external_id"], name="booking_external_id"
            ),
        ]
        indexes = [
            # Retention purge: bookings that ended before a cut-off.
            models.Index(fields=["end"], name="booking_end"),
            # Dashboard timeline: one user's coming bookings.
            models.Index(fields=["synced_user", "start"], name="booking_user_start"),
        ]

    def __str__(self):
        return f"{self.synced_user} {self.start:%Y-%m-%d %H:%M}"


class Activity(models.Model):
    """The activity log (audit trail) the dashboard reads: who did what, to what, and what
    changed. The text is a message id with parameters, translated when shown
    (activity_messages); the message itself never holds an email or a booking's subject."""

    class Level(models.TextChoices):
        INFO = "info", _("information")
        WARNING = "warning", _("warning")
        ERROR = "error", _("error")

    class Subject(models.TextChoices):
        INTEGRATION = "integration", _("integration")
        SETTING = "setting", _("setting")
        RULE = "rule", _("rule")
        USER = "user", _("user")

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="activities")
    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, null=True, blank=True, related_name="activities"
    )
    synced_user = models.ForeignKey(
        SyncedUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="activities"
    )
    created_at = models.DateTimeField(_("time"), auto_now_add=True, db_index=True)
    level = models.CharField(_("level"), max_length=10, choices=Level, default=Level.INFO)
    event = models.CharField(_("event"), max_length=50)
    kind = models.CharField(_("kind"), max_length=20, choices=activity_messages.Kind)
    # Who: a person (with their email at the time, kept after the account goes) or a fixed kind.
    # Blank: a row from before the log said who (nobody knows).
    actor_kind = models.CharField(
        _("actor"), max_length=10, choices=ActorKind, default=ActorKind.SYSTEM, blank=True
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("signed-in user"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_label = models.CharField(_("actor's email"), max_length=254, blank=True)
    # What it concerns, as it was called then (a user's email, a rule in plain words).
    subject = models.CharField(_("concerns"), max_length=20, choices=Subject, blank=True)
    subject_label = models.CharField(_("concerns (name)"), max_length=300, blank=True)
    # [{"field": "days_ahead", "before": 14, "after": 20}]; a secret: {"field": …, "changed": true}
    changes = models.JSONField(_("changes"), default=list, blank=True)
    message_id = models.CharField(_("message id"), max_length=50)
    params = models.JSONField(_("message parameters"), default=dict, blank=True)

    class Meta:
        verbose_name = _("activity")
        verbose_name_plural = _("activity log")
        ordering = ["-created_at", "-id"]
        indexes = [
            # Dashboard: an integration's latest activity.
            models.Index(fields=["integration", "-created_at"], name="activity_integration_time"),
            # Dashboard's log filtered by kind.
            models.Index(
                fields=["integration", "kind", "-created_at"], name="activity_integration_kind"
            ),
        ]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.event}"

    @property
    def message(self) -> str:
        """The entry's text in the active language."""
        return activity_messages.render(self.message_id, self.params)

    @classmethod
    def record(cls, integration, event: str, **fields):
        """One log entry about `integration`, saved: `entry`'s row (its arguments)."""
        entry = cls.entry(integration, event, **fields)
        entry.save(force_insert=True)
        return entry

    @classmethod
    def entry(
        cls,
        integration,
        event: str,
        *,
        actor: actors.Actor,
        message_id: str | None = None,
        params: dict | None = None,
        level=Level.INFO,
        synced_user=None,
        subject: str = "",
        subject_label: str = "",
        changes: list | None = None,
        company_id=None,
    ):
        """One log entry about `integration` (or, with integration None, about the company:
        an integration that is gone), unsaved: `record` saves one, a chunk bulk_creates many.
        `message_id` (default: the event) names a text in activity_messages; `params` fill its
        placeholders."""
        message_id = message_id or event
        if synced_user is not None and not subject:
            subject = cls.Subject.USER
        return cls(
            company_id=company_id or integration.company_id,
            integration=integration,
            synced_user=synced_user,
            event=event,
            kind=activity_messages.kind_of(message_id),  # an unknown id is a bug: KeyError
            message_id=message_id,
            params=params or {},
            level=level,
            actor_kind=actor.kind,
            actor_id=actor.user_id,
            actor_label=actor.label,
            subject=subject,
            subject_label=subject_label[:300],
            changes=changes or [],
        )


class IntegrationNeedingAttention(Integration):
    """Django admin's operations page (Drift): the integrations that need someone, across
    companies (calendarsync/attention.py). No table of its own."""

    class Meta:
        proxy = True
        verbose_name = _("integration needing attention")
        verbose_name_plural = _("Operations: integrations needing attention")


class FollowedGroup(models.Model):
    """A group in Entra ID or a distribution group in Exchange whose members an integration's
    users list follows (Katalog Synk)."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="groups")
    # Graph: the group's id; EWS: its primary SMTP address.
    provider_id = models.CharField(max_length=320)
    name = models.CharField(_("name"), max_length=256)
    # The members as last read, {member id: [email, user principal name]}, and the provider's
    # bookmark for reading only the changes next time (Graph's delta link).
    members = models.JSONField(default=dict, editable=False)
    cursor = models.TextField(blank=True, editable=False)
    matched = models.PositiveIntegerField(_("with a One X subscription"), default=0)
    read_at = models.DateTimeField(_("read"), null=True, blank=True)
    created_at = models.DateTimeField(_("added"), auto_now_add=True)

    class Meta:
        verbose_name = _("followed group")
        verbose_name_plural = _("followed groups")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "provider_id"], name="followedgroup_once"
            ),
        ]

    def __str__(self):
        return self.name


class MembershipReport(models.Model):
    """The last membership run of an integration: what it changed and what it could not, and
    the removals it holds for the admin's confirmation."""

    integration = models.OneToOneField(
        Integration, on_delete=models.CASCADE, related_name="membership_report"
    )
    finished_at = models.DateTimeField(_("finished"))
    added = models.JSONField(default=list)  # emails of the users it added
    removed = models.PositiveIntegerField(default=0)  # removed users' emails go with them
    without_subscription = models.JSONField(default=list)  # members' emails One X lacks
    synced_elsewhere = models.JSONField(default=list)  # members another integration syncs
    not_in_groups = models.JSONField(default=list)  # active subscriptions' emails, in no group
    # Synced user ids a run would remove but holds: too many at once
    # (settings.MSS_GROUP_REMOVAL_HOLD_*); an admin confirms them on the dashboard.
    held_removals = models.JSONField(default=list)
    # The last run that failed (a provider error code, activity_messages.GROUP_ERRORS); the
    # lists above are still those of the last run that worked.
    error = models.CharField(max_length=60, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("membership report")
        verbose_name_plural = _("membership reports")

    def __str__(self):
        return str(self.integration)

    @property
    def error_text(self) -> str:
        return activity_messages.group_error_text(self.error) if self.error else ""
