"""The local limit for the gRPC core: a bare grpc.aio unary echo, in its own
process like the core, answering with a message of the same size."""

from __future__ import annotations

import asyncio
import sys

import grpc
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as pb_grpc


class Echo(pb_grpc.WorkspaceAgentsServiceServicer):
    def __init__(self, reply: pb.GetWorkspaceAgentResponse) -> None:
        self._reply = reply

    async def GetWorkspaceAgent(self, request, context):  # type: ignore[no-untyped-def]
        return self._reply


async def main(address: str, reply_path: str) -> None:
    with open(reply_path, "rb") as fh:
        reply = pb.GetWorkspaceAgentResponse.FromString(fh.read())
    server = grpc.aio.server()
    pb_grpc.add_WorkspaceAgentsServiceServicer_to_server(Echo(reply), server)
    server.add_insecure_port(address)
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
