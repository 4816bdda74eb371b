"""Long-lived requests (log follows, reinit streams, external-auth long
polls, and later terminals and coordination): their caps, and relaying a
core stream to a client.

They cost the facade no thread (the front carries them on its event loop),
but each holds memory and a core stream, so they are capped: past
``facade_max_streams`` open at once the facade answers 503 in Coder's
envelope, and one session (token) may hold at most
``facade_max_streams_per_session`` (429 past it), so a single client — buggy
or hostile — cannot take them all from everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import Callable
from typing import Any

import grpc
from flask import abort, current_app

from rest_facade.errors import error_response
from rest_facade.parse import session_token

EXTENSION = "agentplane.streams"


class StreamSlots:
    def __init__(self, limit: int, per_session: int) -> None:
        self.limit = limit
        self.per_session = min(per_session, limit)
        self._lock = threading.Lock()
        self._open = 0
        self._by_session: dict[str, int] = {}

    def acquire(self) -> Callable[[], None]:
        """Takes a slot for the current request's session, or aborts it (503
        when the server is full, 429 when this session holds its share).
        Returns the function that gives the slot back (once; later calls do
        nothing)."""
        token = session_token() or ""
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            held = self._by_session.get(key, 0)
            if held >= self.per_session:
                abort(
                    error_response(
                        429,
                        "Too many open streams for this session.",
                        detail=f"One session holds at most {self.per_session} streaming "
                        "requests at a time; close one first.",
                    )
                )
            if self._open >= self.limit:
                abort(
                    error_response(
                        503,
                        "Too many open streams.",
                        detail=f"This server holds at most {self.limit} streaming requests; "
                        "try again later.",
                    )
                )
            self._open += 1
            self._by_session[key] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._open -= 1
                left = self._by_session.get(key, 1) - 1
                if left > 0:
                    self._by_session[key] = left
                else:
                    self._by_session.pop(key, None)

        return release

    @property
    def open(self) -> int:
        return self._open


def stream_slots() -> StreamSlots:
    return current_app.extensions[EXTENSION]


_END = object()


class CoreStream:
    """A server-streaming core call (grpc.aio) read by a task into a bounded
    queue: the handler can wait for the next message with a timeout (to send
    keep-alives) without cancelling the call, and a client that reads slowly
    stops the reading, so gRPC's flow control holds the core back instead of
    this process buffering without bound."""

    def __init__(self, call: Any, *, buffered: int = 64) -> None:
        self.call = call
        self._queue: asyncio.Queue[Any] = asyncio.Queue(buffered)
        self._held: Any = _END
        self._task = asyncio.get_running_loop().create_task(self._pump(), name="core-stream")

    async def _pump(self) -> None:
        try:
            async for message in self.call:
                await self._queue.put(message)
        except grpc.RpcError as err:
            await self._queue.put(err)
        except asyncio.CancelledError:
            return
        await self._queue.put(_END)

    async def peek(self, timeout: float | None = None) -> Any:
        """Waits for the first message (or the call's error, raised) and
        leaves it for next()."""
        item = await self.next(timeout)
        self._held = item
        return item

    async def next(self, timeout: float | None = None) -> Any:
        """The next message; None at the end of the stream; raises the
        call's RpcError, or TimeoutError when nothing came within
        ``timeout`` (the call goes on)."""
        if self._held is not _END:
            item, self._held = self._held, _END
            return item
        async with asyncio.timeout(timeout):
            item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)
            return None
        if isinstance(item, grpc.RpcError):
            self._queue.put_nowait(item)
            raise item
        return item

    async def close(self) -> None:
        self.call.cancel()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


async def until_gone(wait_gone: Any, work: Any) -> Any:
    """Runs ``work`` (a coroutine) unless the client leaves first
    (``wait_gone``, a coroutine that returns when it has): then ``work`` is
    cancelled and ConnectionResetError raised."""
    work_task = asyncio.ensure_future(work)
    gone_task = asyncio.ensure_future(wait_gone)
    try:
        done, _ = await asyncio.wait({work_task, gone_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work_task, gone_task):
            if not task.done():
                task.cancel()
        for task in (work_task, gone_task):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if work_task in done and not work_task.cancelled():
        return work_task.result()
    raise ConnectionResetError("the client went away")
