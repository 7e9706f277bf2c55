from django.core.management.base import BaseCommand, CommandError

from onex import directory
from onex.models import Company


class Command(BaseCommand):
    help = (
        "Import One X subscriptions and absence reasons for every company, or for the companies "
        "named by their One X id."
    )

    def add_arguments(self, parser):
        parser.add_argument("company", nargs="*", help="One X company id (default: all)")

    def handle(self, *args, **options):
        if options["company"]:
            companies = list(Company.objects.filter(onex_id__in=options["company"]))
            missing = set(options["company"]) - {c.onex_id for c in companies}
            if missing:
                raise CommandError(f"No company with One X id {', '.join(sorted(missing))}")
            results = [directory.import_company(company) for company in companies]
        else:
            results = directory.import_all()
        for result in results:
            self.stdout.write(str(result))
        failed = [r for r in results if not r.ok]
        if failed:
            raise CommandError(f"{len(failed)} of {len(results)} companies failed")
