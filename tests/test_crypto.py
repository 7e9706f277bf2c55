import io

from cryptography.fernet import Fernet
from django.db import connection

from calendarsync import crypto
from calendarsync.models import Integration


def raw_password(integration):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ews_password FROM calendarsync_integration WHERE id = %s", [integration.pk]
        )
        return cursor.fetchone()[0]


def test_it_stores_the_ews_password_encrypted(company):
    integration = Integration.objects.create(
        company=company, kind="ews", name="On prem", ews_password="S3cret-lösenord!"
    )
    stored = raw_password(integration)
    assert "S3cret" not in stored
    assert stored.startswith("gAAAA")  # a Fernet token
    assert Integration.objects.get(pk=integration.pk).ews_password == "S3cret-lösenord!"


def test_it_reads_old_secrets_after_key_rotation(company, settings):
    old_key = settings.MSS_ENCRYPTION_KEYS[0]
    integration = Integration.objects.create(
        company=company, kind="ews", name="On prem", ews_password="rotate-me"
    )
    settings.MSS_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]
    assert Integration.objects.get(pk=integration.pk).ews_password == "rotate-me"
    assert crypto.fernet().decrypt(raw_password(integration).encode()) == b"rotate-me"


def test_it_refuses_to_read_with_an_unknown_key(company, settings):
    integration = Integration.objects.create(
        company=company, kind="ews", name="On prem", ews_password="x"
    )
    settings.MSS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    try:
        Integration.objects.get(pk=integration.pk)
    except ValueError as exc:
        assert "MSS_ENCRYPTION_KEYS" in str(exc)
    else:
        raise AssertionError("decrypting with the wrong key must fail loudly")


def test_reencrypt_secrets_lets_the_old_key_go(company, settings):
    from django.core.management import call_command

    from calendarsync.models import MailboxSubscription, SyncedUser
    from onex.models import Subscription

    old_key = settings.MSS_ENCRYPTION_KEYS[0]
    integration = Integration.objects.create(
        company=company, kind="ews", name="On prem", ews_password="rotate-me"
    )
    person = Subscription.objects.create(company=company, onex_id="s1", email="a@demo.se")
    user = SyncedUser.objects.create(
        integration=integration, subscription=person, email="a@demo.se"
    )
    MailboxSubscription.objects.create(
        synced_user=user, provider_subscription_id="sub-1", client_state="state-secret"
    )
    new_key = Fernet.generate_key().decode()
    settings.MSS_ENCRYPTION_KEYS = [new_key, old_key]
    out = io.StringIO()
    call_command("reencrypt_secrets", stdout=out)
    assert "calendarsync.Integration.ews_password: 1 encrypted" in out.getvalue()
    assert "calendarsync.MailboxSubscription.client_state: 1 encrypted" in out.getvalue()
    assert "rotate-me" not in out.getvalue() and "state-secret" not in out.getvalue()
    settings.MSS_ENCRYPTION_KEYS = [new_key]  # the old key removed
    assert Integration.objects.get(pk=integration.pk).ews_password == "rotate-me"
    assert MailboxSubscription.objects.get().client_state == "state-secret"
