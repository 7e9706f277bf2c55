"""The directory import: every company's One X subscriptions and absence reasons → onex models.

Creates what is new, updates what changed, and deactivates what vanished (never deletes: rules
and synced users point at these rows), and removes the memberships of admins One X no longer
marks admin. Deactivations and comebacks are announced with the signals in `onex.signals`, so
calendarsync can mark the synced users concerned.
"""

import logging
from dataclasses import dataclass

from django.db import transaction

from .client import OneXError, get_client
from .memberships import prune_company
from .models import AbsenceReason, Company, Subscription
from .signals import subscriptions_deactivated, subscriptions_reactivated

logger = logging.getLogger(__name__)


@dataclass
class ImportResult:
    company: Company
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    reactivated: int = 0
    reasons_created: int = 0
    reasons_updated: int = 0
    reasons_deactivated: int = 0
    memberships_removed: int = 0
    error: str = ""

    @property
    def ok(self):
        return not self.error

    def __str__(self):
        if self.error:
            return f"{self.company.name}: failed — {self.error}"
        return f"{self.company.name}: {self.counts()}"

    def counts(self) -> str:
        return (
            f"subscriptions {self.created} new, {self.updated} updated, "
            f"{self.deactivated} deactivated, {self.reactivated} back; absence reasons "
            f"{self.reasons_created} new, {self.reasons_updated} updated, "
            f"{self.reasons_deactivated} deactivated; memberships {self.memberships_removed} "
            "removed"
        )


def _subscription_fields(item):
    features = item.get("features") or {}
    return {
        "email": (item.get("email") or "").strip().lower(),
        "display_name": item.get("displayName") or "",
        "extension": item.get("extension") or "",
        "msisdn": item.get("msisdn") or "",
        "has_diversion": bool(features.get("diversion")),
        "has_open_diversion": bool(features.get("openDiversion")),
        "is_admin": bool(item.get("admin")),
        "active": True,
    }


def _reason_fields(item):
    label = item.get("label") or {}
    return {
        "label_sv": label.get("sv") or item["code"],
        "label_en": label.get("en") or "",
        "diversion_allowed": bool(item.get("diversionAllowed", True)),
        "active": bool(item.get("active", True)),
    }


def _sync_rows(model, existing, incoming, key, result, prefix):
    """Create/update rows from `incoming` ({key: fields}); deactivate existing ones not in it.

    Returns (deactivated rows, reactivated rows)."""
    deactivated, reactivated = [], []
    for ident, fields in incoming.items():
        row = existing.get(ident)
        if row is None:
            model.objects.create(company=result.company, **{key: ident}, **fields)
            setattr(result, f"{prefix}created", getattr(result, f"{prefix}created") + 1)
            continue
        changed = [name for name, value in fields.items() if getattr(row, name) != value]
        if not changed:
            continue
        if "active" in changed and fields["active"]:
            reactivated.append(row)
        for name in changed:
            setattr(row, name, fields[name])
        row.save()
        setattr(result, f"{prefix}updated", getattr(result, f"{prefix}updated") + 1)
    for ident, row in existing.items():
        if ident not in incoming and row.active:
            row.active = False
            row.save()
            deactivated.append(row)
    setattr(result, f"{prefix}deactivated", len(deactivated))
    return deactivated, reactivated


def import_company(company: Company, client=None) -> ImportResult:
    """Mirror one company's directory. Reads everything first, then writes in one transaction,
    so a failure half-way through the listing changes nothing."""
    client = client or get_client()
    result = ImportResult(company)
    try:
        subscriptions = {
            item["subscriptionId"]: item for item in client.list_subscriptions(company.onex_id)
        }
        reasons = {item["code"]: item for item in client.list_absence_reasons(company.onex_id)}
    except OneXError as error:
        result.error = str(error)
        logger.warning(
            "Directory import of %s failed: %s %s", company.onex_id, error.status, error.code
        )
        return result

    with transaction.atomic():
        existing = {s.onex_id: s for s in company.subscriptions.select_for_update()}
        gone, back = _sync_rows(
            Subscription,
            existing,
            {ident: _subscription_fields(item) for ident, item in subscriptions.items()},
            "onex_id",
            result,
            "",
        )
        result.reactivated = len(back)
        existing_reasons = {r.code: r for r in company.absence_reasons.select_for_update()}
        _sync_rows(
            AbsenceReason,
            existing_reasons,
            {code: _reason_fields(item) for code, item in reasons.items()},
            "code",
            result,
            "reasons_",
        )
        result.memberships_removed = prune_company(company)
        if gone:
            subscriptions_deactivated.send(sender=Company, company=company, subscriptions=gone)
        if back:
            subscriptions_reactivated.send(sender=Company, company=company, subscriptions=back)
    logger.info("Directory import of %s: %s", company.onex_id, result.counts())  # no name
    return result


def import_all(client=None) -> list[ImportResult]:
    """Every company in turn; one company's failure does not stop the others."""
    client = client or get_client()
    return [import_company(company, client) for company in Company.objects.order_by("name")]
