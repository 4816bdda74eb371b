"""Wake-ups for calls that wait on the database (the external-auth long-poll,
the reinit stream): "something changed for key K; re-read it".

A thin naming layer over the store's pubsub (``server/pubsub.py``), so these
waits travel between replicas exactly like log notifications: in process on
SQLite, ``pg_notify``/``LISTEN`` on PostgreSQL. Waiters subscribe *before*
they read, re-read after every wake-up, and also re-read on a timer.
"""

from __future__ import annotations

from server.pubsub import Subscription
from server.storage.db import Database

TOPIC = "wakeup"


class Wakeups:
    def __init__(self, db: Database) -> None:
        self._db = db

    def subscribe(self, key: str) -> Subscription:
        """Must be called on the event loop the subscriber waits on."""
        return self._db.pubsub.subscribe((TOPIC, key))

    def publish(self, key: str) -> None:
        """Wakes every subscriber of ``key`` on every replica."""
        with self._db.write() as conn:
            self._db.pubsub.publish(conn, TOPIC, key)

    def subscriber_count(self, key: str) -> int:
        return self._db.pubsub.subscribers(TOPIC, key)


def external_auth_key(user_id: object, provider_id: str) -> str:
    return f"external-auth:{user_id}:{provider_id}"


def reinit_key(workspace_id: object) -> str:
    return f"reinit:{workspace_id}"
