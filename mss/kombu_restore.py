"""A workaround for kombu 5.7.0 (the newest release): restoring unacknowledged messages after
the Redis connection is lost must never kill the worker.

What happens (reproduced by tests/test_self_healing.py, `-m faults`): Redis dies while the
consumer's channel is in BRPOP and holds unacknowledged messages. Celery's consumer collects
the connection: `Channel.close()` first reads the pending BRPOP (`_brpop_read`), which raises
the connection error before the channel is marked closed; `Connection.collect()` carries on
and lets go of the transport (`transport.client = None`). Celery then closes the connection
again; this time the channel closes, puts its unacknowledged messages back
(`QoS.restore_unacked`), and building a Redis client for that (`Channel._connparams`) raises
AttributeError on the missing client. That is neither a connection nor a channel error, so
nothing on the way up catches it: "Unrecoverable error", and the worker exits. (The base
class's `restore_unacked` collects such errors and returns them; the Redis one raises them.)

`restore_visible` (the sweep of messages past the visibility timeout) is also called unguarded
when a connection is set up; any error but a connection error would escape the same way.

The guard: a restore that fails is logged and skipped. Nothing is lost by that: the messages
stay in Redis's unacked set and the next `restore_visible` of any worker puts them back once
the visibility timeout has passed; or Redis lost them with its restart, and the sync core's
sweeper requests their mailboxes again.
"""

import functools
import logging

from kombu.transport import redis

logger = logging.getLogger(__name__)


def _guard_restore_unacked(restore_unacked):
    @functools.wraps(restore_unacked)
    def guarded(self, client=None):
        try:
            return restore_unacked(self, client)
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            logger.warning(
                "Could not restore %d unacknowledged message(s) (%r); they stay in Redis's "
                "unacked set until the visibility timeout",
                len(self._delivered),
                exc,
            )
            # Forget them here, or a second restore_unacked_once fails its own assertion.
            self._delivered.clear()
            return None

    guarded.mss_guarded = True
    return guarded


def _guard_restore_visible(restore_visible):
    @functools.wraps(restore_visible)
    def guarded(self, *args, **kwargs):
        try:
            return restore_visible(self, *args, **kwargs)
        except self.channel.connection_errors:
            raise  # the connection is broken: the consumer notices and reconnects
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            logger.warning("Could not restore messages past the visibility timeout (%r)", exc)
            return None

    guarded.mss_guarded = True
    return guarded


def install() -> None:
    """Guard kombu's Redis QoS restores (idempotent)."""
    qos = redis.QoS
    if not getattr(qos.restore_unacked, "mss_guarded", False):
        qos.restore_unacked = _guard_restore_unacked(qos.restore_unacked)
    if not getattr(qos.restore_visible, "mss_guarded", False):
        qos.restore_visible = _guard_restore_visible(qos.restore_visible)
