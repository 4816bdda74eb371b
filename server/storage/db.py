"""Engines, sessions and migrations for the one database of a deployment.

SQLite (WAL) is the embedded default; PostgreSQL is the engine for several
replicas. The schema comes only from Alembic (``migrations/``): the server
upgrades on start and refuses to run against a schema newer than its code.

The core never waits on the database's locks on its event loop (one waiting
write there would stall every agent of the replica):

* Reads on the loop use one kept autocommit connection that does not wait
  for locks (PostgreSQL: ``lock_timeout`` LOOP_LOCK_WAIT_MS — plain reads
  take no row locks, only DDL could hold them up; SQLite: busy timeout 0 —
  WAL readers do not wait for writers).
* Writes go through ``run_write``/``offload``/``try_write``. On PostgreSQL
  they run on writer threads (a write waits for round trips and its
  commit's flush, and maybe a row lock), one at a time per key (an agent),
  so one agent whose row another transaction holds occupies one thread, not
  the pool. On SQLite, whose one write lock every writer needs, a write
  first tries the lock on the loop without waiting (the write itself is CPU
  and fastest there); when another holder has it, the write goes to the one
  SQLite writer thread, which waits for it (up to the busy timeout).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
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
# PostgreSQL: how long a read on the loop's kept connection may wait for a
# lock (DDL holding a table, at worst) before it fails (503, database busy).
LOOP_LOCK_WAIT_MS = 20
# PostgreSQL: how long a best-effort write (try_write) waits for a lock
# before it gives up and is left for later.
TRY_LOCK_WAIT_MS = 100
# PostgreSQL writer threads (one write per key at a time; see Database).
POSTGRES_WRITE_THREADS = 16


def _postgres_session(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    with dbapi_conn.cursor() as cur:
        cur.execute(f"SET lock_timeout = '{LOCK_WAIT_SECONDS}s'")
    dbapi_conn.commit()


# Key in a connection's info: it carried the loop's lock settings (the kept
# read connection), which must not stay when it goes back to the pool.
_LOOP_SETTINGS = "agentplane.loop_settings"


def _restore_pool_settings(dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
    if dbapi_conn is None or not record.info.pop(_LOOP_SETTINGS, False):
        return
    # A connection that cannot take it is broken; the pool's ping finds it.
    with contextlib.suppress(Exception):
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            dbapi_conn.execute(f"PRAGMA busy_timeout={LOCK_WAIT_SECONDS * 1000}")
        else:
            _postgres_session(dbapi_conn, record)


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
        sa.event.listen(engine, "checkin", _restore_pool_settings)
        return engine
    engine = sa.create_engine(
        url,
        # Errors (and so the log) never carry a statement's parameters:
        # tokens, log lines and users' text stay out of the server log.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_use_lifo=True,
        pool_timeout=10,
        connect_args={"connect_timeout": 10},
    )
    sa.event.listen(engine, "connect", _postgres_session)
    sa.event.listen(engine, "checkin", _restore_pool_settings)
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
        # Where writes wait (see the module docstring): one thread on SQLite
        # (its writers would only poll each other's lock), a pool on
        # PostgreSQL with one write per key in flight.
        self.writer = ThreadPoolExecutor(
            max_workers=POSTGRES_WRITE_THREADS if self.is_postgres else 1,
            thread_name_prefix="db-writer",
        )
        self._key_locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}
        # Per writer thread: when its call's lock wait runs out (see offload).
        self._deadline = threading.local()
        self._checkout_listener = self._shorten_lock_wait
        sa.event.listen(engine, "checkout", self._checkout_listener)

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

    # -- writes that never wait on the event loop -------------------------------

    async def offload(self, fn: Callable[..., T], *args: Any, key: Hashable = None, **kw: Any) -> T:
        """Runs ``fn(*args, **kw)`` — blocking work with its own transactions
        — on a writer thread and awaits it; with ``key``, after any earlier
        call with the same key has finished (PostgreSQL).

        The lock wait (LOCK_WAIT_SECONDS) counts from this call, not from
        when a thread takes the work: calls queued behind one that waits on
        a lock give up together when it does, instead of one wait after
        another."""
        call = functools.partial(
            self._within, time.monotonic() + LOCK_WAIT_SECONDS, functools.partial(fn, *args, **kw)
        )
        loop = asyncio.get_running_loop()
        if key is None or not self.is_postgres:
            return await loop.run_in_executor(self.writer, call)
        lock, users = self._key_locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._key_locks[key] = (lock, users + 1)
        try:
            async with lock:
                return await loop.run_in_executor(self.writer, call)
        finally:
            lock, users = self._key_locks[key]
            if users <= 1:
                del self._key_locks[key]
            else:
                self._key_locks[key] = (lock, users - 1)

    async def run_write(self, fn: Callable[[sa.Connection], T], *, key: Hashable = None) -> T:
        """``fn(conn)`` in a write transaction, committed; never waiting on
        the loop (see the module docstring). ``fn`` may run twice on SQLite
        (started on the loop, then again on the writer thread when the lock
        was taken): only its database work counts, and the first attempt's
        is rolled back."""
        if not self.is_postgres:
            done, result = self.try_inline_write(fn)
            if done:
                return result  # type: ignore[return-value]
        return await self.offload(self._write_blocking, fn, key=key)

    def _within(self, deadline: float, call: Callable[[], T]) -> T:
        self._deadline.value = deadline
        try:
            return call()
        finally:
            self._deadline.value = None

    def _lock_wait_left(self) -> float | None:
        """On a writer thread whose call has waited in the queue (0.5 s or
        more): the seconds its lock wait has left; otherwise None (the
        connection's usual wait applies)."""
        deadline = getattr(self._deadline, "value", None)
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        return max(0.0, left) if left < LOCK_WAIT_SECONDS - 0.5 else None

    def _shorten_lock_wait(self, dbapi_conn, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        left = self._lock_wait_left()
        if left is None:
            return
        record.info[_LOOP_SETTINGS] = True  # the pool's default comes back at checkin
        if self.is_postgres:
            with dbapi_conn.cursor() as cur:
                cur.execute(f"SET lock_timeout = '{max(1, int(left * 1000))}ms'")
            dbapi_conn.commit()
        else:
            dbapi_conn.execute(f"PRAGMA busy_timeout={int(left * 1000)}")

    def _write_blocking(self, fn: Callable[[sa.Connection], T]) -> T:
        with self.write() as conn:
            return fn(conn)

    async def try_write(self, fn: Callable[[sa.Connection], Any], *, key: Hashable = None) -> bool:
        """A best-effort write (a connection clue, a contact time): done now
        if no other transaction holds what it needs, else not at all (False;
        the caller keeps it for later). Never waits on the loop, and on
        PostgreSQL at most TRY_LOCK_WAIT_MS on its thread."""
        if not self.is_postgres:
            done, _ = self.try_inline_write(fn)
            return done
        return await self.offload(self._try_write_blocking, fn, key=key)

    def _try_write_blocking(self, fn: Callable[[sa.Connection], Any]) -> bool:
        try:
            with self.write() as conn:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{TRY_LOCK_WAIT_MS}ms'")
                fn(conn)
        except sa.exc.DBAPIError as err:
            if getattr(err.orig, "sqlstate", None) == "55P03":  # lock_not_available
                return False
            raise
        return True

    def try_inline_write(self, fn: Callable[[sa.Connection], T]) -> tuple[bool, T | None]:
        """SQLite, on the loop: (True, fn(conn)) committed on the loop's kept
        connection if SQLite's write lock is free right now; (False, None)
        when another connection holds it (nothing was done). Errors of
        ``fn`` propagate, its work rolled back."""
        if self.is_postgres or not _on_event_loop():
            return False, None
        conn = self._pinned_connection()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except sa.exc.OperationalError as err:
            if _sqlite_locked(err):
                return False, None
            self._drop_pinned(conn)
            raise
        try:
            result = fn(conn)
            conn.exec_driver_sql("COMMIT")
        except BaseException as err:
            conn.info.pop(AFTER_COMMIT, None)
            with contextlib.suppress(sa.exc.DBAPIError):
                conn.exec_driver_sql("ROLLBACK")
            if isinstance(err, sa.exc.OperationalError) and _sqlite_locked(err):
                # SQLITE_BUSY at COMMIT (a reader finishing a checkpoint):
                # rolled back, so the writer thread does it instead.
                return False, None
            raise
        _run_after_commit(conn.info)
        return True, result

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
            # The loop never waits for a lock (see the module docstring); the
            # pool's default comes back when the connection goes back to it.
            conn.info[_LOOP_SETTINGS] = True
            if self.is_postgres:
                conn.exec_driver_sql(f"SET lock_timeout = '{LOOP_LOCK_WAIT_MS}ms'")
            else:
                conn.exec_driver_sql("PRAGMA busy_timeout = 0")
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

    def close(self) -> None:
        """Stops the writer threads and returns the kept connections (the
        engine stays, for whoever else uses it)."""
        self.writer.shutdown(wait=True)
        self.close_pinned()
        if sa.event.contains(self.engine, "checkout", self._checkout_listener):
            sa.event.remove(self.engine, "checkout", self._checkout_listener)

    def dispose(self) -> None:
        self.close()
        self.engine.dispose()


# Background database work of long-lived components (the replica registry,
# the tailnet mirror): a few threads of their own, so a slow database does
# not starve the loop's default executor.
_BACKGROUND = concurrent.futures.ThreadPoolExecutor(
    max_workers=4, thread_name_prefix="agentplane-db"
)


class BackgroundWork:
    """Database work a component runs on a worker thread and awaits from the
    loop. Cancelling the awaiting task does not stop the thread, so at its
    stop the component ``drain``s: waits for what is still running, which
    would otherwise write after the component is gone (and race what the
    process or the next test does with the database)."""

    def __init__(self) -> None:
        self._running: set[concurrent.futures.Future[Any]] = set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        future = _BACKGROUND.submit(fn, *args)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return await asyncio.wrap_future(future)

    async def drain(self, timeout: float = 15.0) -> None:
        running = list(self._running)
        if running:
            await asyncio.to_thread(concurrent.futures.wait, running, timeout)


# A kept read connection idle longer than this is pinged before use.
_PINNED_PING_AFTER_SECONDS = 10.0


def _on_event_loop() -> bool:
    return asyncio._get_running_loop() is not None


def _sqlite_locked(err: sa.exc.DBAPIError) -> bool:
    return str(err.orig).startswith(("database is locked", "database table is locked"))
