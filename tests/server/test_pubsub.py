"""The PostgreSQL pubsub's listener on a real server: notifications from
another connection arrive, none of a burst is dropped, and a lost
connection wakes every subscriber and is replaced."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from server.pubsub import AGENT_LOGS, PostgresPubSub
from tests.conftest import PG_URL, require_pg


async def _until(sub, condition, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    """Waits on the subscription until `condition()` holds."""
    while not condition():
        assert await sub.wait(timeout), "no wake-up"


def test_listener_delivers_every_notification_and_survives_losing_its_connection() -> None:
    require_pg()

    async def scenario() -> None:
        pubsub = PostgresPubSub(PG_URL, reconnect_delay=0.05)
        await pubsub.start()
        key = uuid.uuid4().hex
        try:
            with (
                pubsub.subscribe((AGENT_LOGS, key)) as sub,
                pubsub.subscribe((AGENT_LOGS, uuid.uuid4().hex)) as other_key,
                psycopg.connect(PG_URL, autocommit=True) as other,
            ):

                def notify() -> None:
                    other.execute(
                        "SELECT pg_notify(%s, %s)", pubsub.sql_notification(AGENT_LOGS, key)
                    )

                start = sub.sequence()
                notify()
                await _until(sub, lambda: sub.sequence() > start)

                # A burst from separate transactions: each one is delivered
                # (the subscription's counter moves once per delivery), and
                # only to this key.
                start, untouched = sub.sequence(), other_key.sequence()
                for _ in range(50):
                    notify()
                await _until(sub, lambda: sub.sequence() >= start + 50)
                assert sub.sequence() == start + 50
                assert other_key.sequence() == untouched

                # The listener's connection dies: everyone is woken (they
                # re-read what they may have missed) and it reconnects.
                lost = pubsub.listener_pid
                assert lost is not None
                assert other.execute("SELECT pg_terminate_backend(%s)", (lost,)).fetchone() == (
                    True,
                )
                assert await other_key.wait(10)
                await asyncio.wait_for(pubsub._listening.wait(), 10)
                assert pubsub.reconnects >= 1
                assert pubsub.listener_pid not in (None, lost)

                start = sub.sequence()
                notify()
                await _until(sub, lambda: sub.sequence() > start)
        finally:
            await pubsub.close()

    asyncio.run(scenario())
