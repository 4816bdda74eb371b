"""The local limit for coordination: a bare grpc.aio server speaking the
same ``coder.tailnet.v2.Tailnet/Coordinate`` messages, in its own process
like the core, and doing nothing but the transport's part.

* A stream opened with metadata ``role: publisher`` broadcasts: each
  update_self it sends is wrapped in a CoordinateResponse (one NODE peer
  update) and handed to every other open stream, which yields it.
* Every other stream reads its first request, keeps it, answers it with
  one response (as the core answers a new client with its agent's node),
  and waits for broadcasts (so 10,000 of them are 10,000 idle bidi
  streams).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import grpc
from coder.tailnet.v2 import tailnet_pb2 as tpb
from coder.tailnet.v2 import tailnet_pb2_grpc as tgrpc


class Bare(tgrpc.TailnetServicer):
    def __init__(self) -> None:
        self.subscribers: set[asyncio.Queue[Any]] = set()

    async def Coordinate(self, request_iterator: Any, context: Any) -> Any:
        role = dict(context.invocation_metadata()).get("role")
        if role == "publisher":
            async for request in request_iterator:
                response = tpb.CoordinateResponse(
                    peer_updates=[
                        tpb.CoordinateResponse.PeerUpdate(
                            id=b"\x01" * 16,
                            node=request.update_self.node,
                            kind=tpb.CoordinateResponse.PeerUpdate.NODE,
                            reason="node update",
                        )
                    ]
                )
                for queue in self.subscribers:
                    queue.put_nowait(response)
            return
        first = await request_iterator.__anext__()  # kept, as a peer's node would be
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self.subscribers.add(queue)
        try:
            yield tpb.CoordinateResponse(
                peer_updates=[
                    tpb.CoordinateResponse.PeerUpdate(
                        id=b"\x02" * 16,
                        node=first.update_self.node,
                        kind=tpb.CoordinateResponse.PeerUpdate.NODE,
                        reason="add tunnel",
                    )
                ]
            )
            while True:
                yield await queue.get()
        finally:
            self.subscribers.discard(queue)
            del first


async def main(address: str) -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 4 << 20),
            ("grpc.max_send_message_length", 4 << 20),
        ]
    )
    tgrpc.add_TailnetServicer_to_server(Bare(), server)
    server.add_insecure_port(address)
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
