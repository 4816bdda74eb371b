"""One agent's tunnel on this replica: requests out, answers back, many at a
time over one stream.

The core gives every request an id; the agent's frames carry it back. A
unary request waits for its one answer; a stream (a container watch, a
terminal attachment) gets its frames in order until ``done`` or ``failure``.

Flow control, so that one slow reader never stalls the others: terminal
output is sent by the agent only against credit the core grants as it
passes output on (``OUTPUT_WINDOW`` bytes outstanding per attachment), and
keystrokes are sent by the core only against the agent's acknowledgements
(``INPUT_WINDOW``). Everything else on the stream is small and bounded by
``MAX_OPEN_REQUESTS``, so the tunnel's own stream is always read and written
promptly and what an attachment buffers is bounded by its window.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from typing import Any

from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb

# Terminal output the agent may send an attachment beyond what the core has
# passed on; also the most an attachment ever buffers in the core.
OUTPUT_WINDOW = 256 << 10
# Keystrokes the core may send beyond what the agent has written.
INPUT_WINDOW = 16 << 10
# Requests open at once on one tunnel (terminals and watches included).
MAX_OPEN_REQUESTS = 1024
# A container list frame is small; a watch that is not read keeps at most
# this many (later frames replace the newest: each is a full list).
MAX_QUEUED_LISTS = 4


class TunnelClosed(Exception):
    """The tunnel ended (the agent left, was replaced or the core stops)."""


class TunnelBusy(Exception):
    """Too many requests are open on this tunnel."""


class ProtocolViolation(TunnelClosed):
    """The agent sent more than its credit allowed on a stream."""


class _Request:
    """An open request: the agent's frames for it, in order."""

    def __init__(self, tunnel: AgentTunnel, request_id: int) -> None:
        self._tunnel = tunnel
        self.id = request_id
        self._frames: asyncio.Queue[tpb.TunnelRequest | BaseException] = asyncio.Queue()
        self._output_bytes = 0
        self._lists = 0
        self.finished = False
        self._violated = False
        # Input credit (terminals).
        self._input_in_flight = 0
        self._input_credit = asyncio.Event()
        self._input_credit.set()

    # -- from the tunnel's reader --------------------------------------------
    def deliver(self, frame: tpb.TunnelRequest) -> None:
        kind = frame.WhichOneof("frame")
        if kind == "pty_input_ack":
            self._input_in_flight = max(0, self._input_in_flight - frame.pty_input_ack)
            if self._input_in_flight < INPUT_WINDOW:
                self._input_credit.set()
            return
        if self.finished and self._violated:
            return
        if kind == "pty_output":
            self._output_bytes += len(frame.pty_output)
            if self._output_bytes > OUTPUT_WINDOW:
                # The agent broke the flow control: what it sent is dropped
                # and the request fails now, not after its backlog.
                self._violated = True
                while not self._frames.empty():
                    self._frames.get_nowait()
                self._output_bytes = 0
                self.fail(ProtocolViolation("terminal output beyond the granted credit"))
                self.close()
                return
        elif kind == "containers" and self._lists >= MAX_QUEUED_LISTS:
            # Nobody is reading this watch: keep the latest full list only.
            self._drop_oldest_list()
        if kind == "containers":
            self._lists += 1
        self._frames.put_nowait(frame)

    def _drop_oldest_list(self) -> None:
        kept: list[Any] = []
        dropped = False
        while not self._frames.empty():
            item = self._frames.get_nowait()
            if (
                not dropped
                and isinstance(item, tpb.TunnelRequest)
                and item.WhichOneof("frame") == "containers"
            ):
                dropped = True
                self._lists -= 1
                continue
            kept.append(item)
        for item in kept:
            self._frames.put_nowait(item)

    def fail(self, err: BaseException) -> None:
        self._frames.put_nowait(err)

    # -- for the caller ----------------------------------------------------------
    async def next(self) -> tpb.TunnelRequest:
        item = await self._frames.get()
        if isinstance(item, BaseException):
            self._frames.put_nowait(item)  # every later next() fails the same way
            raise item
        kind = item.WhichOneof("frame")
        if kind == "pty_output":
            self._output_bytes -= len(item.pty_output)
        elif kind == "containers":
            self._lists -= 1
        return item

    def acknowledge_output(self, size: int) -> None:
        """The caller passed ``size`` output bytes on: the agent may send more."""
        if size > 0 and not self.finished:
            self._tunnel.send(tpb.TunnelResponse(id=self.id, pty_output_ack=size))

    async def write_input(self, data: bytes) -> None:
        """Sends keystrokes, waiting for input credit when the agent is behind
        (so a client typing into a stuck terminal is slowed, not buffered)."""
        view = memoryview(data)
        while view:
            await self._input_credit.wait()
            if self.finished:
                raise TunnelClosed("the terminal is closed")
            room = INPUT_WINDOW - self._input_in_flight
            chunk = bytes(view[:room])
            view = view[room:]
            self._input_in_flight += len(chunk)
            if self._input_in_flight >= INPUT_WINDOW:
                self._input_credit.clear()
            self._tunnel.send(tpb.TunnelResponse(id=self.id, pty_input=tpb.PtyInput(data=chunk)))

    def resize(self, height: int, width: int) -> None:
        self._tunnel.send(
            tpb.TunnelResponse(id=self.id, pty_input=tpb.PtyInput(height=height, width=width))
        )

    def close(self) -> None:
        """The caller is done with the request: tell the agent to stop it."""
        if self.finished:
            return
        self.finished = True
        self._input_credit.set()
        if self._tunnel.forget(self.id):
            self._tunnel.send(tpb.TunnelResponse(id=self.id, cancel=tpb.Cancel()))


class AgentTunnel:
    """The tunnel of one agent: the servicer feeds it the agent's frames
    (``dispatch``) and writes what ``next_outgoing`` returns."""

    def __init__(self, agent_id: uuid.UUID, *, version: str, pty_idle_timeout: int) -> None:
        self.agent_id = agent_id
        self.version = version
        self.pty_idle_timeout = pty_idle_timeout
        self.connection_id = uuid.uuid4()
        self._ids = itertools.count(1)
        self._open: dict[int, _Request] = {}
        self._outgoing: asyncio.Queue[tpb.TunnelResponse | None] = asyncio.Queue()
        self.closed_reason: str | None = None
        self._on_close: list[Callable[[], None]] = []

    @property
    def open_requests(self) -> int:
        return len(self._open)

    # -- the servicer's side -----------------------------------------------------
    def dispatch(self, frame: tpb.TunnelRequest) -> None:
        request = self._open.get(frame.id)
        if request is None:
            return  # a late frame for a request that is over: nothing waits for it
        request.deliver(frame)
        kind = frame.WhichOneof("frame")
        if kind in ("done", "failure"):
            request.finished = True
            self._open.pop(frame.id, None)

    async def next_outgoing(self) -> tpb.TunnelResponse | None:
        """The next frame for the agent; None once the tunnel is closed."""
        return await self._outgoing.get()

    def close(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        for request in list(self._open.values()):
            request.finished = True
            request.fail(TunnelClosed(reason))
        self._open.clear()
        self._outgoing.put_nowait(None)
        for callback in self._on_close:
            callback()

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    # -- the callers' side -------------------------------------------------------
    def send(self, frame: tpb.TunnelResponse) -> None:
        if self.closed_reason is None:
            self._outgoing.put_nowait(frame)

    def forget(self, request_id: int) -> bool:
        """Drops an open request; True if it was still open."""
        return self._open.pop(request_id, None) is not None

    def start(self, **call: Any) -> _Request:
        """Sends one request (``list_listening_ports=...``, ``pty_attach=...``)
        and returns its handle; ``close()`` it when done."""
        if self.closed_reason is not None:
            raise TunnelClosed(self.closed_reason)
        if len(self._open) >= MAX_OPEN_REQUESTS:
            raise TunnelBusy(f"{len(self._open)} requests are open on the agent's tunnel")
        request = _Request(self, next(self._ids))
        self._open[request.id] = request
        self._outgoing.put_nowait(tpb.TunnelResponse(id=request.id, **call))
        return request
