"""Runs a test's coroutine on a fresh event loop and fails the test when it
leaves any task behind (the wire's "no task left behind" promise)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]], *, timeout: float = 30.0) -> T:
    async def checked() -> Any:
        result = await asyncio.wait_for(main(), timeout)
        # Let cancellations and callbacks already scheduled run out.
        for _ in range(3):
            await asyncio.sleep(0)
        left = [
            t
            for t in asyncio.all_tasks()
            if t is not asyncio.current_task() and not _grpc_internal(t)
        ]
        assert not left, f"tasks left behind: {left}"
        return result

    return asyncio.run(checked())


def _grpc_internal(task: asyncio.Task[Any]) -> bool:
    """grpc.aio's own bookkeeping of a call's final status, which its C core
    completes after the channel is closed: the library's, not ours."""
    return "coro=<_AioCall." in repr(task)


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Polls a condition the code under test exposes no event for."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
