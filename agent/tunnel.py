"""The agent's side of the tunnel (``agentplane.agenttunnel.v1``): it opens
the stream with its token, says hello, and serves the core's requests until
the stream breaks; then it reconnects with backoff (the next ``--url``
first). A refused token ends the agent (``TokenRefused``).

Requests are served concurrently, each in its own task, and answered by id;
the one writer task writes frames in the order they are produced. Terminal
sessions outlive a tunnel: only their attachments end with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb

from agent.containers import WATCH_SECONDS, Containers, DevcontainerError
from agent.link import RETRYABLE, Link, TokenRefused
from agent.ports import ListeningPorts
from agent.pty import PtyManager

log = logging.getLogger("agentplane.agent")


class TunnelClient:
    def __init__(
        self,
        link: Link,
        *,
        version: str,
        pty: PtyManager,
        ports: ListeningPorts,
        containers: Containers,
    ) -> None:
        self._link = link
        self._version = version
        self._pty = pty
        self._ports = ports
        self._containers = containers
        self.connected = asyncio.Event()
        self.sessions = 0

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                    raise self._link.refuse(err) from None
                if err.code() not in RETRYABLE:
                    log.warning("tunnel: %s: %s", err.code().name, err.details())
                self._link.unreachable("tunnel", err)
            self.connected.clear()
            await self._link.pause()
            await self._link.reconnect()

    async def _session(self) -> None:
        self._link.open()
        call = self._link.tunnel.Tunnel(metadata=self._link.metadata)
        outgoing: asyncio.Queue[tpb.TunnelRequest] = asyncio.Queue()
        tasks: dict[int, asyncio.Task[Any]] = {}
        writer: asyncio.Task[None] | None = None
        try:
            await call.write(
                tpb.TunnelRequest(
                    hello=tpb.Hello(
                        version=self._version,
                        pty_idle_timeout_seconds=int(self._pty.idle_timeout),
                    )
                )
            )
            welcome = await call.read()
            if welcome is grpc.aio.EOF:
                await call  # raises the status the server ended with
                raise ConnectionError("the server closed the tunnel at once")
            self._link.reachable()
            self.sessions += 1
            self.connected.set()

            async def write_frames() -> None:
                while True:
                    frame = await outgoing.get()
                    await call.write(frame)

            writer = asyncio.create_task(write_frames())
            send = outgoing.put_nowait
            while True:
                frame = await call.read()
                if frame is grpc.aio.EOF:
                    break
                self._dispatch(frame, send, tasks)
            await call  # the status the server ended the tunnel with
        finally:
            self.connected.clear()
            for task in tasks.values():
                task.cancel()
            self._pty.detach_all()
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer
            call.cancel()

    def _spawn(
        self,
        tasks: dict[int, asyncio.Task[Any]],
        request_id: int,
        work: Coroutine[Any, Any, None],
    ) -> None:
        task = asyncio.create_task(work)
        tasks[request_id] = task
        task.add_done_callback(lambda _t: tasks.pop(request_id, None))

    def _dispatch(
        self,
        frame: tpb.TunnelResponse,
        send: Callable[[tpb.TunnelRequest], None],
        tasks: dict[int, asyncio.Task[Any]],
    ) -> None:
        rid = frame.id
        kind = frame.WhichOneof("frame")
        if kind == "pty_input":
            self._pty.input(rid, frame.pty_input)
        elif kind == "pty_output_ack":
            self._pty.acknowledge(rid, frame.pty_output_ack)
        elif kind == "cancel":
            self._pty.cancel(rid)
            task = tasks.pop(rid, None)
            if task is not None:
                task.cancel()
        elif kind == "pty_attach":
            self._spawn(tasks, rid, self._pty.attach(rid, frame.pty_attach, send))
        elif kind == "list_pty_sessions":
            send(tpb.TunnelRequest(id=rid, pty_sessions=self._pty.list()))
        elif kind == "list_listening_ports":
            self._spawn(tasks, rid, self._listening_ports(rid, send))
        elif kind == "list_containers":
            self._spawn(tasks, rid, self._list_containers(rid, send))
        elif kind == "watch_containers":
            self._spawn(tasks, rid, self._watch_containers(rid, send))
        elif kind in ("delete_devcontainer", "recreate_devcontainer"):
            self._spawn(tasks, rid, self._devcontainer(rid, kind, frame, send))
        elif kind is not None:
            send(
                tpb.TunnelRequest(
                    id=rid,
                    failure=tpb.Failure(
                        kind=tpb.Failure.Kind.KIND_INVALID,
                        message=f"This agent does not serve {kind}.",
                    ),
                )
            )

    @staticmethod
    def _internal(rid: int, message: str, err: BaseException) -> tpb.TunnelRequest:
        return tpb.TunnelRequest(
            id=rid,
            failure=tpb.Failure(
                kind=tpb.Failure.Kind.KIND_INTERNAL, message=message, detail=str(err)
            ),
        )

    async def _listening_ports(self, rid: int, send: Callable[[Any], None]) -> None:
        try:
            ports = await asyncio.to_thread(self._ports.list)
        except Exception as err:
            send(self._internal(rid, "scan listening ports", err))
            return
        send(tpb.TunnelRequest(id=rid, listening_ports=tpb.ListeningPorts(ports=ports)))

    async def _list_containers(self, rid: int, send: Callable[[Any], None]) -> None:
        try:
            listing = await self._containers.list()
        except Exception as err:
            send(self._internal(rid, "list containers", err))
            return
        send(tpb.TunnelRequest(id=rid, containers=listing))

    async def _watch_containers(self, rid: int, send: Callable[[Any], None]) -> None:
        last = None
        while True:
            try:
                listing = await self._containers.list()
            except Exception as err:
                send(self._internal(rid, "list containers", err))
                return
            encoded = listing.SerializeToString(deterministic=True)
            if encoded != last:
                last = encoded
                send(tpb.TunnelRequest(id=rid, containers=listing))
            await asyncio.sleep(WATCH_SECONDS)

    async def _devcontainer(
        self, rid: int, kind: str, frame: tpb.TunnelResponse, send: Callable[[Any], None]
    ) -> None:
        try:
            if kind == "delete_devcontainer":
                await self._containers.delete(frame.delete_devcontainer.devcontainer_id)
            else:
                await self._containers.recreate(frame.recreate_devcontainer.devcontainer_id)
        except DevcontainerError as err:
            send(
                tpb.TunnelRequest(
                    id=rid,
                    failure=tpb.Failure(kind=err.kind, message=err.message, detail=err.detail),
                )
            )
            return
        except Exception as err:
            send(self._internal(rid, kind.replace("_", " "), err))
            return
        send(tpb.TunnelRequest(id=rid, done=tpb.Done()))


__all__ = ["TokenRefused", "TunnelClient"]
