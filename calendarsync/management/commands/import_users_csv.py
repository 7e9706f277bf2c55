"""Add the users of a customer's list (the delivery-process list) to an integration.

For Telenor staff. The file is CSV, UTF-8 (a BOM is fine), one user per line:

    email[,name[,anything else]]

The first column is the user's email address; any further columns (name, department …) are
ignored, so the customer's sheet can be used as it is. Comma, semicolon or tab separate columns.
A first line without "@" is a header. Each address must belong to an active One X subscription
of the integration's company and not be synced by another integration.

The same rules as the Användare tab's CSV import apply (it is the same function). Every line
gets a report line: added, or FAILED and why. The exit status is non-zero when a line failed.
"""

import sys
import uuid

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from calendarsync import actors
from calendarsync.models import Integration
from calendarsync.views.users import import_users


def find_integration(value):
    if value.isdigit():
        lookup = {"pk": int(value)}
    else:
        try:
            lookup = {"code": uuid.UUID(value)}
        except ValueError as error:
            raise CommandError(f"{value!r} is neither an integration id nor its code") from error
    integration = Integration.objects.select_related("company").filter(**lookup).first()
    if integration is None:
        raise CommandError(f"No integration {value}")
    return integration


class Command(BaseCommand):
    help = "Add the users listed in a CSV file (email first on each line) to an integration."

    def add_arguments(self, parser):
        parser.add_argument("integration", help="the integration's id or code (UUID)")
        parser.add_argument("csv_file", help="path of the CSV file, or - for standard input")
        parser.add_argument("--dry-run", action="store_true", help="check every line, add nobody")

    def handle(self, *args, **options):
        integration = find_integration(options["integration"])
        text = self._read(options["csv_file"])
        with transaction.atomic():
            report = import_users(integration, text, actor=actors.command("import_users_csv"))
            if options["dry_run"]:
                transaction.set_rollback(True)  # also drops the queued syncs (on_commit)
        for line in report:
            if line.ok:
                self.stdout.write(f"line {line.number}: {line.email} — {line.message}")
            else:
                self.stdout.write(f"line {line.number}: {line.email} — FAILED: {line.message}")
        added = sum(1 for line in report if line.ok)
        failed = len(report) - added
        verb = "would be added" if options["dry_run"] else "added"
        self.stdout.write(
            f"{integration.company.name} / {integration.name}: {added} {verb}, {failed} failed"
        )
        if failed:
            raise CommandError(f"{failed} of {len(report)} lines failed; see the report above")

    def _read(self, path):
        if path == "-":
            return sys.stdin.read()
        try:
            with open(path, encoding="utf-8-sig") as handle:
                return handle.read()
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}") from error
        except UnicodeDecodeError as error:
            raise CommandError(f"{path} is not UTF-8 text") from error
