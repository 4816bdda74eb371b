"""The ``coder.tailnet.v2.Tailnet`` servicer. Declared whole; coordination
arrives with the tailnet issue, so every RPC answers UNIMPLEMENTED for now."""

from __future__ import annotations

from coder.tailnet.v2 import tailnet_pb2, tailnet_pb2_grpc

from server.errors import unimplemented_rpcs


class TailnetServicer(tailnet_pb2_grpc.TailnetServicer):
    pass


unimplemented_rpcs(TailnetServicer, tailnet_pb2.DESCRIPTOR.services_by_name["Tailnet"])
