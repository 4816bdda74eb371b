"""Write-behind buffers for the reports agents send on a timer (stats,
metadata values): the RPC queues its write and answers; the buffer is
written in one transaction every second, or as soon as it holds 1024 items.
Coder does the same (its StatsBatcher and metadata batcher) — these reports
are frequent, small and replaceable, and a write per call would make the
database the bottleneck of every agent's heartbeat.

An answered call is an acknowledged report, so a flush never drops one
because of another or because the database was away for a while:

* **One caller's bad item fails alone.** A batch the database refuses for
  its data (a constraint, a value it cannot hold) is split in halves and
  retried until the item at fault is alone; that item is logged and
  dropped (it can never be written), every other one is stored.
* **A transient failure keeps the items.** When the database cannot take
  the write now (unreachable, restarting, a lock held past the lock
  timeout), the items stay queued, ahead of newer ones, and the next flush
  (a second later) tries again.
* **Bounded.** Each item has a key (an agent's stats, one metadata key of
  an agent); a newer item for a key that is still waiting replaces it
  (``merge`` decides how: metadata keeps the newest value, stats add up
  their traffic counters). So a buffer holds at most one item per key —
  for an outage of any length, not one per report — and at most
  ``max_keys`` keys: past that a call with a new key is refused with
  UNAVAILABLE instead of being acknowledged and dropped.

Flushes run on the database's writer threads, off the event loop. Outside an event loop
(a direct call, a tool) items are written through at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from server.errors import Unavailable
from server.storage.db import is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")

FLUSH_INTERVAL_SECONDS = 1.0
# A flush starts at once when this many items wait.
MAX_BUFFERED = 1024
# Distinct keys a buffer holds while the database is away; past it, calls
# with a new key are refused (UNAVAILABLE), never dropped after an answer.
MAX_KEYS = 100_000

BUFFER_FULL = (
    "agentplane's database is unavailable and this server holds as many reports as it "
    "keeps for it. Try again."
)


def _newest(_old: T, new: T) -> T:
    return new


class WriteBehind(Generic[T]):
    def __init__(
        self,
        name: str,
        write: Callable[[Sequence[T]], None],
        *,
        key: Callable[[T], Hashable],
        merge: Callable[[T, T], T] = _newest,
        interval: float = FLUSH_INTERVAL_SECONDS,
        max_items: int = MAX_BUFFERED,
        max_keys: int = MAX_KEYS,
        run_off_loop: Callable[[Callable[[], None]], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        # How a flush runs off the loop (Database.offload: the writer
        # threads, its lock wait counted from the call); default: a thread.
        self._run_off_loop = run_off_loop or asyncio.to_thread
        self._write = write
        self._key = key
        self._merge = merge
        self._interval = interval
        self._max = max_items
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # key -> item, oldest first (dicts keep insertion order).
        self._items: dict[Hashable, T] = {}
        self._timer: asyncio.TimerHandle | None = None
        # A flush is on its way (on the loop only): while it is, no other
        # is started, so flushes that wait on a lock never pile up.
        self._flushing: asyncio.Task[None] | None = None
        # Set while flushes keep failing for want of a database (logged once).
        self._failing = False

    def add(self, item: T) -> None:
        """Queues the item (or writes it through, off any event loop).
        ``Unavailable`` when the buffer holds ``max_keys`` keys and this one
        is new: the database has been away too long to promise more."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write([item])
            return
        key = self._key(item)
        with self._lock:
            old = self._items.get(key)
            if old is None:
                if len(self._items) >= self._max_keys:
                    raise Unavailable(BUFFER_FULL)
                self._items[key] = item
            else:
                self._items[key] = self._merge(old, item)
            full = len(self._items) >= self._max
        if full:
            self._start_flush(loop)
        else:
            self._arm(loop)

    def pending(self) -> int:
        with self._lock:
            return len(self._items)

    def flush(self) -> int:
        """Writes everything queued so far; returns how many items were
        written or dropped as bad. Items the database could not take now
        are queued again (ahead of newer ones) and counted out."""
        with self._flush_lock:
            with self._lock:
                items, self._items = self._items, {}
            if not items:
                return 0
            kept = self._write_isolating(list(items.items()))
            if kept:
                self._requeue(kept)
            return len(items) - len(kept)

    def _write_isolating(self, batch: list[tuple[Hashable, T]]) -> list[tuple[Hashable, T]]:
        """Writes the batch in one transaction; if the database refuses it
        for its data, in halves, down to the single item at fault. Returns
        what a transient failure left unwritten."""
        try:
            self._write([item for _key, item in batch])
        except Exception as err:
            if is_transient(err):
                if not self._failing:
                    log.warning(
                        "writing buffered %s failed (%s); kept for the next flush",
                        self.name,
                        getattr(err, "orig", err),
                    )
                    self._failing = True
                return batch
            if len(batch) == 1:
                # Never the statement's parameters: the engine hides them.
                log.warning("dropped one buffered %s the database refuses: %s", self.name, err)
                return []
            middle = len(batch) // 2
            return self._write_isolating(batch[:middle]) + self._write_isolating(batch[middle:])
        if self._failing:
            log.info("writing buffered %s works again", self.name)
            self._failing = False
        return []

    def _requeue(self, kept: list[tuple[Hashable, T]]) -> None:
        with self._lock:
            newer, self._items = self._items, dict(kept)
            for key, item in newer.items():
                old = self._items.get(key)
                self._items[key] = item if old is None else self._merge(old, item)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._start_flush(loop)

    def _start_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._flushing is not None and not self._flushing.done():
            return  # the running flush re-arms the timer when it is done
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flushing = loop.create_task(
            self._run_off_loop(self._flush_logged), name=f"flush {self.name}"
        )
        # What a failed flush kept, and what arrived meanwhile, waits for the
        # next timer, even if no new report arrives to arm one.
        self._flushing.add_done_callback(lambda _task: self._arm(loop))

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None or (self._flushing is not None and not self._flushing.done()):
            return
        if self.pending():
            self._timer = loop.call_later(self._interval, self._on_timer, loop)

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("flushing buffered %s failed", self.name)


class ReportBuffers:
    """The write-behind buffers of one core, flushed together on demand
    (shutdown, tests)."""

    def __init__(self, *buffers: WriteBehind) -> None:  # type: ignore[type-arg]
        self.buffers = buffers

    def flush(self) -> int:
        return sum(buffer.flush() for buffer in self.buffers)

    def pending(self) -> int:
        return sum(buffer.pending() for buffer in self.buffers)

    async def drain(self, timeout: float = 10.0) -> None:
        """Waits (bounded) for flushes on their way (at shutdown; what is
        left is written by flush() once the loop has stopped)."""
        running = {
            b._flushing for b in self.buffers if b._flushing is not None and not b._flushing.done()
        }
        if running:
            await asyncio.wait(running, timeout=timeout)
