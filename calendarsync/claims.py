"""Per-mailbox locks, so that runs of one mailbox never interleave.

A run claims a mailbox with a conditional UPDATE of `sync_started_at` (its claim's token) and
holds it by a lease: while it works, a thread of its own process renews `sync_renewed_at`
every third of MSS_CLAIM_LEASE_SECONDS (`renewing`). A claim whose lease ran out belongs to a
run that died with its process (a worker killed, a machine lost): the next run may take it
over, and the sweeper frees it and requests the mailbox again, a lease after the death instead
of a task time limit after the start. A run that hangs keeps renewing until Celery's hard time
limit kills its process, and the lease runs out a lease later.
"""

import contextlib
import logging
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, connections
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.db.models.lookups import LessThan

from . import logcontext
from .models import SyncedUser

logger = logging.getLogger(__name__)


def lease() -> timedelta:
    return timedelta(seconds=settings.MSS_CLAIM_LEASE_SECONDS)


def _expired(now: datetime) -> LessThan:
    # A claim never renewed holds from its start.
    return LessThan(Coalesce("sync_renewed_at", "sync_started_at"), now - lease())


def claim(synced_user: SyncedUser, now: datetime) -> bool:
    """Take the mailbox's lock; clears the pending request, which this run now serves."""
    return bool(
        SyncedUser.objects.filter(pk=synced_user.pk)
        .filter(Q(sync_started_at__isnull=True) | _expired(now))
        .update(sync_started_at=now, sync_renewed_at=now, sync_requested_at=None)
    )


def release(synced_user: SyncedUser, claimed_at: datetime) -> None:
    """Free our own claim (a run that took over an abandoned one keeps its own). A database
    that cut the connection gets one more try on a new one; if that fails too, the lease runs
    out and the sweeper requests the mailbox again."""
    release_many([synced_user.pk], claimed_at)


def claim_many(users, now: datetime) -> set[int]:
    """claim for a chunk: one UPDATE takes every free (or abandoned) mailbox among `users`
    (loaded SyncedUser rows), one SELECT learns which by the claim's token, `now`. A mailbox
    another run already holds with the very same token is left out, so the token is ours."""
    ids = [user.pk for user in users if user.sync_started_at != now]
    if not ids:
        return set()
    SyncedUser.objects.filter(pk__in=ids).filter(
        Q(sync_started_at__isnull=True) | _expired(now)
    ).update(sync_started_at=now, sync_renewed_at=now, sync_requested_at=None)
    return set(
        SyncedUser.objects.filter(pk__in=ids, sync_started_at=now).values_list("pk", flat=True)
    )


def release_many(synced_user_ids, claimed_at: datetime) -> None:
    """release for a chunk, in one UPDATE (tried twice)."""
    ids = list(synced_user_ids)
    if not ids:
        return
    mine = SyncedUser.objects.filter(pk__in=ids, sync_started_at=claimed_at)
    try:
        mine.update(sync_started_at=None, sync_renewed_at=None)
    except DatabaseError:
        drop_broken_connection()
        try:
            mine.update(sync_started_at=None, sync_renewed_at=None)
        except DatabaseError:
            logger.warning("Could not release %d mailboxes; their leases run out", len(ids))


def abandoned(now: datetime):
    """Mailboxes whose claim's lease ran out: their run died."""
    return SyncedUser.objects.filter(_expired(now), sync_started_at__isnull=False)


def drop_broken_connection() -> None:
    # Outside a transaction, a connection the database terminated stays unusable until closed;
    # the next query then opens a new one.
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


@contextlib.contextmanager
def renewing(synced_user_ids, claimed_at: datetime):
    """Renew the leases of these mailboxes, claimed at `claimed_at`, while the block runs.

    The renewal moves on from `claimed_at` by the time elapsed, so a run given its own clock
    (tests, a backfill) renews in that clock. A claim released or taken over meanwhile no
    longer matches and is left alone. A renewal the database refuses is tried again at the
    next tick: two ticks may fail before the lease runs out.
    """
    ids = list(synced_user_ids)
    if not ids:
        yield
        return
    stop = threading.Event()
    every = settings.MSS_CLAIM_LEASE_SECONDS / 3
    started = time.monotonic()

    def renew():
        try:
            while not stop.wait(every):
                renewed_at = claimed_at + timedelta(seconds=time.monotonic() - started)
                try:
                    SyncedUser.objects.filter(pk__in=ids, sync_started_at=claimed_at).update(
                        sync_renewed_at=renewed_at
                    )
                except DatabaseError:
                    logger.warning("Could not renew the claims of %d mailboxes", len(ids))
                    drop_broken_connection()
        finally:
            connections.close_all()  # this thread's own connections

    renewer = threading.Thread(target=logcontext.carried(renew), name="claim-renewer", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(timeout=every)
