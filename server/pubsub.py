"""Cross-request (and cross-replica) wake-ups: "something changed for key K
on topic T; go and re-read it".

Notifications carry only ids, never data: a subscriber re-reads the rows it
cares about, so a lost or coalesced notification costs latency, not
correctness, as long as subscribers also re-poll on a timer (they do) and
after the listener reconnects (every subscriber is woken then).

* ``InProcessPubSub`` — one process (the SQLite default).
* ``PostgresPubSub`` — several replicas on one PostgreSQL: ``pg_notify``
  inside the writer's transaction (delivered exactly when it commits) and one
  ``LISTEN`` connection per process fanning out to local subscribers.

Besides subscriptions to (topic, key) pairs, a component can ``listen`` to
a whole topic: its callback gets every key published on it (the tailnet
coordinator hears about any peer), and ``None`` whenever notifications may
have been missed (the listener reconnected): then it re-reads everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import psycopg
import sqlalchemy as sa

log = logging.getLogger(__name__)

# Topics (the key is the id of the thing that changed).
AGENT_LOGS = "agent-logs"  # key: agent id; a batch was stored or the agent overflowed
WORKSPACE = "workspace"  # key: workspace id; a new build was created
WORKSPACE_OWNER = "workspace-owner"  # key: owner id; one of their workspaces was created or built
DERP_MAP = "derp-map"  # key: "current"; the stored DERP map was replaced
TAILNET_PEER = "tailnet-peer"  # key: "<peer id>/<replica id>"; the replica changed the peer's rows
TAILNET_HANDSHAKE = "tailnet-rfh"  # key: "<dst>/<src>/<replica id>"; ready for handshake

# One PostgreSQL channel for everything; the payload is "<topic>:<key>".
PG_CHANNEL = "agentplane_events"
# NOTIFY payloads must stay far below PostgreSQL's 8000-byte cap.
MAX_PAYLOAD = 512


Topic = tuple[str, str]
# A whole-topic listener: called with each key published on the topic, or
# with None when notifications may have been lost.
Listener = Callable[[str | None], None]


class Subscription:
    """Wakes when any of its (topic, key) pairs is published; wake-ups
    coalesce into one."""

    def __init__(self, hub: _Hub, keys: tuple[Topic, ...]) -> None:
        self._hub = hub
        self.keys = keys
        self._event = asyncio.Event()

    def _wake(self) -> None:
        self._event.set()

    def sequence(self) -> int:
        """Grows with every notification delivered for this subscription's
        keys in this process (for caches keyed on "after notification N")."""
        return max(self._hub.seq.get(key, 0) for key in self.keys)

    async def wait(self, timeout: float) -> bool:
        """True if woken, False on timeout (callers re-poll either way)."""
        # asyncio.timeout, not wait_for: no task per wait (thousands of
        # followers wait here at once), and on Python 3.11 wait_for can swallow
        # a cancellation that arrives as the event is set, and the waiting
        # task then outlives its stop.
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True

    def close(self) -> None:
        self._hub.remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Hub:
    """Local fan-out of (topic, key) wake-ups to subscriptions, on one loop."""

    def __init__(self) -> None:
        self._subs: dict[Topic, set[Subscription]] = defaultdict(set)
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._loop: asyncio.AbstractEventLoop | None = None
        # Key -> the hub-wide delivery counter at its last delivery: never
        # goes back, even when every subscriber leaves and others come (one
        # int per key ever followed).
        self.seq: dict[Topic, int] = {}
        self._counter = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add(self, sub: Subscription) -> None:
        for key in sub.keys:
            self._subs[key].add(sub)

    def remove(self, sub: Subscription) -> None:
        for key in sub.keys:
            subs = self._subs.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[key]

    def listen(self, topic: str, listener: Listener) -> Callable[[], None]:
        self._listeners[topic].append(listener)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                self._listeners[topic].remove(listener)

        return stop

    def _tell_listeners(self, topic: str, key: str | None) -> None:
        for listener in list(self._listeners.get(topic, ())):
            try:
                listener(key)
            except Exception:
                log.exception("pubsub listener for %s failed", topic)

    def deliver(self, topic: str, key: str) -> None:
        if topic in self._listeners:
            self._tell_listeners(topic, key)
        subs = self._subs.get((topic, key))
        if not subs:
            return
        self._counter += 1
        self.seq[(topic, key)] = self._counter
        for sub in list(subs):
            sub._wake()

    def deliver_threadsafe(self, topic: str, key: str) -> None:
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            self.deliver(topic, key)
        else:
            loop.call_soon_threadsafe(self.deliver, topic, key)

    def wake_all(self) -> None:
        """Wakes everyone as if each key had been published (so caches keyed
        on the delivery counter are not reused across a lost stretch)."""
        self._counter += 1
        for key, subs in list(self._subs.items()):
            self.seq[key] = self._counter
            for sub in list(subs):
                sub._wake()
        for topic in list(self._listeners):
            self._tell_listeners(topic, None)

    def count_key(self, key: Topic) -> int:
        return len(self._subs.get(key, ()))

    def count(self) -> int:
        return len({sub for subs in self._subs.values() for sub in subs})


class InProcessPubSub:
    """Publishing wakes subscribers of this process only."""

    def __init__(self) -> None:
        self._hub = _Hub()

    async def start(self) -> None:
        self._hub.bind(asyncio.get_running_loop())

    async def close(self) -> None:
        self._hub.wake_all()

    def subscribe(self, *keys: Topic) -> Subscription:
        sub = Subscription(self._hub, keys)
        self._hub.add(sub)
        return sub

    def listen(self, topic: str, listener: Listener) -> Callable[[], None]:
        """Calls ``listener(key)`` on the loop for every key published on
        ``topic`` (and ``listener(None)`` after a possible loss); returns the
        function that stops it."""
        return self._hub.listen(topic, listener)

    def publish(self, conn: sa.Connection | Any, topic: str, key: str) -> None:
        """Called inside the writer's transaction (from ``Database.write`` or
        ``Database.session``); delivered once it commits, so a woken reader
        sees the rows."""
        from server.storage.db import after_commit

        after_commit(conn, lambda: self._hub.deliver_threadsafe(topic, key))

    def sql_notification(self, topic: str, key: str) -> None:
        """In-process delivery has no SQL form; callers use publish()."""
        return None

    @property
    def subscriber_count(self) -> int:
        return self._hub.count()

    def subscribers(self, topic: str, key: str) -> int:
        return self._hub.count_key((topic, key))


class PostgresPubSub:
    """NOTIFY in the writer's transaction; one LISTEN connection per process."""

    def __init__(self, dsn: str, *, reconnect_delay: float = 0.5) -> None:
        self._dsn = dsn
        self._hub = _Hub()
        self._task: asyncio.Task[None] | None = None
        self._reconnect_delay = reconnect_delay
        self._listening = asyncio.Event()
        self._closing = False
        self.reconnects = 0
        # The listening connection's backend (pg_stat_activity.pid), while
        # there is one.
        self.listener_pid: int | None = None

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._hub.bind(asyncio.get_running_loop())
        self._task = asyncio.create_task(self._listen_forever(), name="pg-listen")
        # Bounded: a server whose database is down still starts, and its
        # followers fall back to re-polling until the listener connects.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout=10)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._hub.wake_all()

    async def _listen_forever(self) -> None:
        while not self._closing:
            try:
                # TCP keepalives: a silently dead connection (no reset) is
                # noticed in about 30 s instead of the OS's two hours.
                async with await psycopg.AsyncConnection.connect(
                    self._dsn,
                    autocommit=True,
                    connect_timeout=10,
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=4,
                ) as conn:
                    await conn.execute(f"LISTEN {PG_CHANNEL}")
                    self.listener_pid = conn.info.backend_pid
                    self._listening.set()
                    # Anything published while we were not listening is
                    # recovered by waking everyone to re-read.
                    self._hub.wake_all()
                    await self._deliver_until_lost(conn)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("pubsub listener lost its connection (%s); reconnecting", err)
            self._listening.clear()
            self.listener_pid = None
            self.reconnects += 1
            self._hub.wake_all()
            await asyncio.sleep(self._reconnect_delay)

    async def _deliver_until_lost(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Delivers the connection's notifications as they arrive, until the
        connection fails (then raises its error).

        One reader stays on the socket for the connection's life and drains
        every notification libpq has parsed. psycopg's ``notifies()`` adds
        and removes a reader and a future per notification: under log
        ingestion on PostgreSQL (a notification per batch, 4 senders) it held
        the core's GIL in 4.7 % of py-spy's samples of the loop, this 2.5 %."""
        loop = asyncio.get_running_loop()
        pgconn = conn.pgconn
        lost: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                pgconn.consume_input()
            except psycopg.Error as err:
                if not lost.done():
                    lost.set_exception(err)
                return
            while (note := pgconn.notifies()) is not None:
                topic, _, key = note.extra.decode().partition(":")
                self._hub.deliver(topic, key)

        fd = pgconn.socket
        loop.add_reader(fd, readable)
        try:
            # Anything libpq read before the reader was set (with LISTEN's
            # own answer) is delivered too.
            readable()
            await lost
        finally:
            loop.remove_reader(fd)

    def subscribe(self, *keys: Topic) -> Subscription:
        sub = Subscription(self._hub, keys)
        self._hub.add(sub)
        return sub

    def listen(self, topic: str, listener: Listener) -> Callable[[], None]:
        """Calls ``listener(key)`` on the loop for every key published on
        ``topic`` (and ``listener(None)`` after a possible loss); returns the
        function that stops it."""
        return self._hub.listen(topic, listener)

    def publish(self, conn: sa.Connection | Any, topic: str, key: str) -> None:
        channel, payload = self.sql_notification(topic, key)
        conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": channel, "payload": payload},
        )

    def sql_notification(self, topic: str, key: str) -> tuple[str, str]:
        """(channel, payload) for a ``pg_notify`` a writer folds into a
        statement it runs anyway (saving the round trip of publish())."""
        payload = f"{topic}:{key}"
        if len(payload) > MAX_PAYLOAD:
            raise ValueError("pubsub payloads carry ids, not data")
        return PG_CHANNEL, payload

    @property
    def subscriber_count(self) -> int:
        return self._hub.count()

    def subscribers(self, topic: str, key: str) -> int:
        return self._hub.count_key((topic, key))


PubSub = InProcessPubSub | PostgresPubSub


def pubsub_for(engine: sa.Engine) -> PubSub:
    if engine.dialect.name == "postgresql":
        url = engine.url.set(drivername="postgresql")
        return PostgresPubSub(url.render_as_string(hide_password=False))
    return InProcessPubSub()
