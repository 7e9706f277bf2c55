from django.conf import settings
from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _


class Company(models.Model):
    name = models.CharField(_("name"), max_length=200)
    org_number = models.CharField(_("organisation number"), max_length=20, unique=True)
    onex_id = models.CharField(_("One X company id"), max_length=64, unique=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("company")
        verbose_name_plural = _("companies")
        ordering = ["name"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    """Which company a user administers in the Microsoft Sync pages."""

    class Role(models.TextChoices):
        ADMIN = "admin", _("Administrator")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(_("role"), max_length=20, choices=Role, default=Role.ADMIN)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["user", "company"], name="membership_user_company")
        ]

    def __str__(self):
        return f"{self.user} → {self.company}"


class Subscription(models.Model):
    """A One X phone user (abonnemang), mirrored from the One X directory."""

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="subscriptions")
    onex_id = models.CharField(_("One X id"), max_length=64)
    email = models.EmailField(_("email"))
    display_name = models.CharField(_("display name"), max_length=200, blank=True)
    extension = models.CharField(_("extension"), max_length=20, blank=True)
    msisdn = models.CharField(_("mobile number"), max_length=20, blank=True)
    has_diversion = models.BooleanField(_("has diversion service"), default=False)
    has_open_diversion = models.BooleanField(_("has open diversion"), default=False)
    is_admin = models.BooleanField(_("administrator"), default=False)
    active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("One X subscription")
        verbose_name_plural = _("One X subscriptions")
        ordering = ["display_name", "email"]
        constraints = [
            models.UniqueConstraint(fields=["company", "onex_id"], name="subscription_onex_id"),
        ]
        indexes = [
            # Adding a user by email: look up the company's subscription for that address.
            models.Index(fields=["company", "email"], name="subscription_company_email"),
        ]

    def __str__(self):
        return f"{self.display_name} <{self.email}>" if self.display_name else self.email

    def save(self, *args, **kwargs):
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)


class AbsenceReason(models.Model):
    """A Frånvaroorsak as One X defines it for the company (Möte, Lunch, Semester …)."""

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="absence_reasons")
    code = models.CharField(_("code"), max_length=32)
    label_sv = models.CharField(_("Swedish label"), max_length=100)
    label_en = models.CharField(_("English label"), max_length=100, blank=True)
    diversion_allowed = models.BooleanField(_("diversion allowed"), default=True)
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("absence reason")
        verbose_name_plural = _("absence reasons")
        ordering = ["label_sv"]
        constraints = [
            models.UniqueConstraint(fields=["company", "code"], name="absencereason_code"),
        ]

    def __str__(self):
        return self.label

    @property
    def label(self):
        if (get_language() or "sv").startswith("en") and self.label_en:
            return self.label_en
        return self.label_sv
