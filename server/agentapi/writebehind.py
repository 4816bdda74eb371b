"""Write-behind buffers for the reports agents send on a timer (stats,
metadata values): the RPC queues its write and answers; the buffer is
written in one transaction every second, or as soon as it holds 1024 items.
Coder does the same (its StatsBatcher and metadata batcher) — these reports
are frequent, small and replaceable, and a write per call would make the
database the bottleneck of every agent's heartbeat.

Flushes run on a worker thread, off the event loop. A write that fails is
logged and dropped (the agent reports again at its next interval). Outside
an event loop (a direct call, a tool) items are written through at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

FLUSH_INTERVAL_SECONDS = 1.0
MAX_BUFFERED = 1024


class WriteBehind(Generic[T]):
    def __init__(
        self,
        name: str,
        write: Callable[[Sequence[T]], None],
        *,
        interval: float = FLUSH_INTERVAL_SECONDS,
        max_items: int = MAX_BUFFERED,
    ) -> None:
        self.name = name
        self._write = write
        self._interval = interval
        self._max = max_items
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._items: list[T] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, item: T) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write([item])
            return
        with self._lock:
            self._items.append(item)
            full = len(self._items) >= self._max
            arm = self._timer is None and not full
            if arm:
                self._timer = loop.call_later(self._interval, self._on_timer, loop)
        if full:
            loop.run_in_executor(None, self._flush_logged)

    def pending(self) -> int:
        with self._lock:
            return len(self._items)

    def flush(self) -> int:
        """Writes everything queued so far; returns how many items."""
        with self._flush_lock:
            with self._lock:
                items, self._items = self._items, []
            if items:
                self._write(items)
            return len(items)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._timer = None
        loop.run_in_executor(None, self._flush_logged)

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("writing buffered %s failed; those reports are dropped", self.name)


class ReportBuffers:
    """The write-behind buffers of one core, flushed together on demand
    (shutdown, tests)."""

    def __init__(self, *buffers: WriteBehind) -> None:  # type: ignore[type-arg]
        self.buffers = buffers

    def flush(self) -> int:
        return sum(buffer.flush() for buffer in self.buffers)
