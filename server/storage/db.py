"""Engines, sessions and migrations for the one database of a deployment.

SQLite (WAL) is the embedded default; PostgreSQL is the engine for several
replicas. The schema comes only from Alembic (``migrations/``): the server
upgrades on start and refuses to run against a schema newer than its code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer agentplane than this one."""


def normalise_url(url: str) -> str:
    """Accepts the usual spellings and picks the psycopg 3 driver for PostgreSQL."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


# How long a statement waits for a lock another transaction holds before it
# fails (the call then answers UNAVAILABLE, 503): SQLite's busy timeout and
# PostgreSQL's lock_timeout. Unbounded, a write on the core's event loop would
# wait as long as that other transaction lasts, and every call with it.
LOCK_WAIT_SECONDS = 5


def _postgres_session(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    with dbapi_conn.cursor() as cur:
        cur.execute(f"SET lock_timeout = '{LOCK_WAIT_SECONDS}s'")
    dbapi_conn.commit()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    # WAL lets readers run beside the writer; NORMAL is durable at each
    # checkpoint and safe against application crashes (not power loss of
    # the last transactions), the usual WAL trade-off.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={LOCK_WAIT_SECONDS * 1000}")
    cur.close()


def create_engine(url: str, *, pool_size: int = 10) -> sa.Engine:
    """An engine for the deployment's database. Its errors never carry the
    statement's parameters (``hide_parameters``): they hold what callers
    sent (tokens, hashes, text) and end up in the server's log."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            hide_parameters=True,
            connect_args={"check_same_thread": False, "timeout": LOCK_WAIT_SECONDS},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = sa.create_engine(
        url,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_use_lifo=True,
        pool_timeout=10,
        connect_args={"connect_timeout": 10},
    )
    sa.event.listen(engine, "connect", _postgres_session)
    return engine


def alembic_config(engine: sa.Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: sa.Engine) -> None:
    """Upgrades to head, or refuses when the schema is newer than this code."""
    script = ScriptDirectory.from_config(alembic_config())
    current = current_revision(engine)
    if current is not None:
        try:
            script.get_revision(current)
        except Exception:
            raise SchemaTooNew(
                f"the database schema is at revision {current!r}, which this agentplane "
                f"does not know (its newest is {script.get_current_head()!r}); "
                "the database was migrated by a newer agentplane — upgrade agentplane "
                "or point it at another database"
            ) from None
    command.upgrade(alembic_config(engine), "head")


def is_transient(exc: BaseException) -> bool:
    """The database could not take the statement now — unreachable,
    restarting, out of connections, a lock held past the lock timeout — so
    the same statement may pass later. False for what the database refuses
    for the statement itself (a constraint, a value it cannot hold)."""
    if isinstance(exc, sa.exc.TimeoutError):  # no pooled connection in time
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    return exc.connection_invalidated or isinstance(
        exc, sa.exc.OperationalError | sa.exc.InterfaceError
    )


# Key in a connection's or session's ``info``: callables to run once its
# transaction has committed (e.g. in-process notifications, which must not
# wake a reader before the rows are visible).
AFTER_COMMIT = "agentplane.after_commit"


def after_commit(conn: sa.Connection | Session, callback: Callable[[], None]) -> None:
    conn.info.setdefault(AFTER_COMMIT, []).append(callback)


def _run_after_commit(info: dict[str, Any]) -> None:
    # The transaction has committed: a failing callback must not make the
    # caller believe otherwise (and, say, write the same rows again).
    for callback in info.pop(AFTER_COMMIT, ()):
        try:
            callback()
        except Exception:
            log.exception("after-commit callback failed")


class Database:
    """An engine plus a session factory; the store every concern queries through."""

    def __init__(self, engine: sa.Engine) -> None:
        from server.pubsub import pubsub_for
        from server.storage.agentviews import AgentViewCache

        self.engine = engine
        self._sessions = sessionmaker(engine, class_=Session, expire_on_commit=False)
        self.agent_views = AgentViewCache()
        # Change notifications travel with the database: NOTIFY in the
        # writer's transaction on PostgreSQL, in-process on SQLite.
        self.pubsub = pubsub_for(engine)
        self._pinned = threading.local()
        self._pinned_all: list[sa.Connection] = []
        self._pinned_lock = threading.Lock()

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A read-or-write session committed on success, rolled back on error."""
        with self._sessions() as session:
            try:
                with session.begin():
                    yield session
            except BaseException:
                session.info.pop(AFTER_COMMIT, None)
                raise
            _run_after_commit(session.info)

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A Core connection in a transaction: committed on success."""
        with self.engine.connect() as conn, self.transaction(conn):
            yield conn

    @contextlib.contextmanager
    def transaction(self, conn: sa.Connection) -> Iterator[sa.Connection]:
        """A transaction on a connection the caller keeps (a dedicated
        writer): committed on success, then its after-commit callbacks run."""
        try:
            with conn.begin():
                yield conn
        except BaseException:
            conn.info.pop(AFTER_COMMIT, None)
            raise
        _run_after_commit(conn.info)

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A connection in autocommit mode for hot read paths (SQLAlchemy
        Core, no ORM): each statement runs on its own, without the BEGIN and
        ROLLBACK round trips a transaction would add (measured on PostgreSQL:
        1.7 ms -> 0.7 ms for the agent-token lookup).

        On an event-loop thread (the core's handlers run there, one at a
        time) the connection is kept across calls instead of checked out of
        the pool each time: checkout, the pre-ping and switching the
        isolation level cost more than the queries (measured with SQLite:
        agent lookup 287 us pooled vs 95 us kept). Other threads use the pool.
        Only for reads, and results are read to the end inside the block: a
        half-read result would keep SQLite's read snapshot open, so later
        reads on this thread would not see new commits."""
        if _on_event_loop():
            conn = self._pinned_connection()
            try:
                yield conn
            except sa.exc.DBAPIError as err:
                if err.connection_invalidated or conn.invalidated:
                    self._drop_pinned(conn)
                raise
            return
        with self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def read_retrying(self, read: Callable[[sa.Connection], T]) -> T:
        """``read(conn)`` on a read connection; when that connection turns out
        to be dead (the database restarted since its last use), once more on
        a new one. Only for idempotent reads. The lookups that start every
        call use it, so a database restart costs no failed request."""
        try:
            with self.read() as conn:
                return read(conn)
        except sa.exc.DBAPIError as err:
            if not err.connection_invalidated:
                raise
            log.info("read connection lost (%s); retrying on a new one", err.orig)
        with self.read() as conn:
            return read(conn)

    def _pinned_connection(self) -> sa.Connection:
        local = self._pinned
        conn: sa.Connection | None = getattr(local, "conn", None)
        now = time.monotonic()
        if conn is not None and (conn.closed or conn.invalidated):
            self._drop_pinned(conn)
            conn = None
        if conn is not None and now - local.used > _PINNED_PING_AFTER_SECONDS:
            # The pool would have pre-pinged; do the same after a quiet spell
            # so a restarted database costs no failed request.
            try:
                conn.exec_driver_sql("SELECT 1").close()
            except sa.exc.DBAPIError:
                self._drop_pinned(conn)
                conn = None
        if conn is None:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            local.conn = conn
            with self._pinned_lock:
                self._pinned_all.append(conn)
        local.used = now
        return conn

    def _drop_pinned(self, conn: sa.Connection) -> None:
        if getattr(self._pinned, "conn", None) is conn:
            self._pinned.conn = None
        with self._pinned_lock:
            if conn in self._pinned_all:
                self._pinned_all.remove(conn)
        with contextlib.suppress(Exception):
            conn.close()

    def close_pinned(self) -> None:
        """Returns every kept read connection to the pool (at shutdown)."""
        with self._pinned_lock:
            kept, self._pinned_all = self._pinned_all, []
        for conn in kept:
            with contextlib.suppress(Exception):
                conn.close()

    def dispose(self) -> None:
        self.close_pinned()
        self.engine.dispose()


# A kept read connection idle longer than this is pinged before use.
_PINNED_PING_AFTER_SECONDS = 10.0


def _on_event_loop() -> bool:
    return asyncio._get_running_loop() is not None
