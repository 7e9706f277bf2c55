from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from onex.models import Company, Membership

# Anna is Demo AB's administrator in the One X sandbox and has this password in the Telenor ID
# sandbox; the same login works on the password form outside production (LOCAL_LOGIN_USERNAMES).
DEMO_USERNAME = "anna.andersson@demo.se"
DEMO_PASSWORD = "demo-kalender"
# Demo Kommun (on Exchange On Prem, the EWS sandbox): Åsa is its One X administrator and signs
# in with Telenor ID; her membership comes from One X at sign-in.
KOMMUN_ADMIN = "asa.lind@demokommun.se"


class Command(BaseCommand):
    help = "Create the demo companies Demo AB and Demo Kommun, and Demo AB's admin (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        company, _ = Company.objects.get_or_create(
            onex_id="demo-ab", defaults={"name": "Demo AB", "org_number": "556000-0000"}
        )
        user, created = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME,
            defaults={"email": DEMO_USERNAME, "first_name": "Anna", "last_name": "Andersson"},
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        Membership.objects.get_or_create(user=user, company=company)
        Company.objects.get_or_create(
            onex_id="demo-kommun", defaults={"name": "Demo Kommun", "org_number": "212000-0000"}
        )
        self.stdout.write(
            f"Demo AB is ready. Open http://127.0.0.1:8000/, choose Log in with Telenor ID and "
            f"sign in as {DEMO_USERNAME} / {DEMO_PASSWORD}\n"
            f"Demo Kommun (Exchange On Prem) is ready too: sign in with Telenor ID as "
            f"{KOMMUN_ADMIN} / {DEMO_PASSWORD}"
        )
