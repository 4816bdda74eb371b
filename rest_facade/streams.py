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


_NOTHING = object()


class CoreStream:
    """A server-streaming core call (grpc.aio) as a handler reads it: one
    message at a time (so a slow client slows the reading, and gRPC's flow
    control holds the core back instead of this process buffering), with an
    optional timeout that does not end the call (a cancelled ``read()``
    would cancel the RPC, so a timed read waits on a pending read kept for
    the next call). ``cancel`` (e.g. when the client leaves) ends the call;
    the reader then sees the end of the stream."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self._pending: asyncio.Future[Any] | None = None
        self._held: Any = _NOTHING
        self._cancelled = False

    async def peek(self, timeout: float | None = None) -> Any:
        """Waits for the first message (or the call's error, raised) and
        leaves it for next()."""
        item = await self.next(timeout)
        self._held = item
        return item

    async def next(self, timeout: float | None = None) -> Any:
        """The next message; None at the end of the stream (or once
        cancelled); raises the call's RpcError, or TimeoutError when nothing
        came within ``timeout`` (the call goes on)."""
        if self._held is not _NOTHING:
            item, self._held = self._held, _NOTHING
            return item
        if timeout is None and self._pending is None:
            return await self._read()
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._read())
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            raise TimeoutError
        pending, self._pending = self._pending, None
        return pending.result()

    async def _read(self) -> Any:
        if self._cancelled:
            return None
        try:
            message = await self.call.read()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # grpc.aio raises CancelledError from read() on a call cancelled
            # locally: that is the end of the stream, unless this task itself
            # is being cancelled.
            if self._cancelled and (task is None or not task.cancelling()):
                return None
            raise
        if message is grpc.aio.EOF:
            return None
        return message

    def cancel(self) -> None:
        self._cancelled = True
        self.call.cancel()

    async def close(self) -> None:
        self.cancel()
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending


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
