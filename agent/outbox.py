"""What the agent must not lose: logs, lifecycle states, script timings and
connection reports are queued here and sent in order; an item leaves its
queue only once the server has taken it, so a server restart or a network
break delays them and loses none (``Link.call`` retries until the server
answers).

Logs are batched per log source: a line reaches the server within
``LOG_FLUSH_SECONDS`` of being queued (Coder's agent flushes on a timer too),
a batch holds at most ``LOG_BATCH_LINES`` lines / ``LOG_BATCH_BYTES`` bytes,
and at most ``LOG_QUEUE_BYTES`` wait (beyond that new lines are dropped with
one warning: the server keeps only 1 MiB per agent anyway). Once the server
says the agent's log limit is reached, logs are no longer sent.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from coder.agent.v2 import agent_pb2

from agent.link import CallFailed, Link

log = logging.getLogger("agentplane.agent")

LOG_FLUSH_SECONDS = 0.25
LOG_BATCH_LINES = 1000
LOG_BATCH_BYTES = 256 << 10
LOG_QUEUE_BYTES = 16 << 20
MAX_LINE_BYTES = 64 << 10
# Coder's agent buffers at most 2048 connection reports.
MAX_CONNECTION_REPORTS = 2048

INFO = agent_pb2.Log.Level.INFO
ERROR = agent_pb2.Log.Level.ERROR


@dataclasses.dataclass
class _Line:
    output: str
    level: int
    size: int


class LogSender:
    """Per-source FIFO queues of log lines, sent in batches by one task."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._queues: dict[uuid.UUID, collections.deque[_Line]] = {}
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._sent = asyncio.Event()
        self._dropped = 0
        self.limit_exceeded = False
        self.sent_batches = 0

    def write(self, source: uuid.UUID, output: str, level: int = INFO) -> None:
        if self.limit_exceeded:
            return
        data = output.encode("utf-8", "replace")
        if len(data) > MAX_LINE_BYTES:
            output = data[:MAX_LINE_BYTES].decode("utf-8", "ignore")
        size = min(len(data), MAX_LINE_BYTES)
        if self._queued_bytes + size > LOG_QUEUE_BYTES:
            if self._dropped == 0:
                log.warning("log queue full (%d bytes); dropping new lines", self._queued_bytes)
            self._dropped += 1
            return
        self._queues.setdefault(source, collections.deque()).append(_Line(output, level, size))
        self._queued_bytes += size
        self._wake.set()

    def pending(self, source: uuid.UUID | None = None) -> int:
        if source is not None:
            return len(self._queues.get(source, ()))
        return sum(len(q) for q in self._queues.values())

    async def flushed(self, source: uuid.UUID | None = None, timeout: float | None = None) -> bool:
        """Waits until nothing of ``source`` (or of any source) is queued."""

        async def empty() -> None:
            while self.pending(source) and not self.limit_exceeded:
                self._sent.clear()
                await self._sent.wait()

        try:
            await asyncio.wait_for(empty(), timeout)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        while True:
            if not self.pending():
                self._wake.clear()
                await self._wake.wait()
            # Let a burst of lines gather into one batch.
            await asyncio.sleep(LOG_FLUSH_SECONDS)
            for source in list(self._queues):
                while self._queues.get(source):
                    await self._send_batch(source)
            self._queues = {s: q for s, q in self._queues.items() if q}

    async def _send_batch(self, source: uuid.UUID) -> None:
        queue = self._queues[source]
        lines: list[_Line] = []
        size = 0
        for line in queue:
            if lines and (len(lines) >= LOG_BATCH_LINES or size + line.size > LOG_BATCH_BYTES):
                break
            lines.append(line)
            size += line.size
        request = agent_pb2.BatchCreateLogsRequest(
            log_source_id=source.bytes,
            logs=[agent_pb2.Log(output=line.output, level=line.level) for line in lines],
        )
        try:
            response = await self._link.call("BatchCreateLogs", request)
        except CallFailed as err:
            # The server will never take this batch (e.g. the limit): drop it.
            log.warning("dropping %d log lines: %s", len(lines), err)
            response = None
        for _ in lines:
            queue.popleft()
        self._queued_bytes -= size
        self.sent_batches += 1
        if response is not None and response.log_limit_exceeded:
            log.warning("the server's log limit for this agent is reached; logs are not sent")
            self.limit_exceeded = True
            self._queues.clear()
            self._queued_bytes = 0
        self._sent.set()


class OrderedSender:
    """A FIFO of calls sent one at a time, in order, each until it passes."""

    def __init__(self, link: Link, name: str, *, limit: int | None = None) -> None:
        self._link = link
        self._name = name
        self._limit = limit
        self._items: collections.deque[tuple[str, Any, Callable[[Any], Any] | None]] = (
            collections.deque()
        )
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def put(self, method: str, request: Any, on_sent: Callable[[Any], Any] | None = None) -> bool:
        if self._limit is not None and len(self._items) >= self._limit:
            log.warning("%s queue full (%d); dropping a report", self._name, self._limit)
            return False
        self._items.append((method, request, on_sent))
        self._idle.clear()
        self._wake.set()
        return True

    def __len__(self) -> int:
        return len(self._items)

    async def drained(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        while True:
            if not self._items:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            method, request, on_sent = self._items[0]
            try:
                response = await self._link.call(method, request)
            except CallFailed as err:
                log.warning("%s: the server refused %s (%s); dropping it", self._name, method, err)
                response = None
            self._items.popleft()
            if on_sent is not None and response is not None:
                result = on_sent(response)
                if isinstance(result, Awaitable):
                    await result
