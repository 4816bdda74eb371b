"""The agent tunnels this replica holds, by agent id.

One tunnel per agent: an agent that opens a second one (it reconnected
before the core noticed the first one drop) replaces the first, which is
closed. Finding the tunnel of an agent held by another replica is the
dialer's job (``server/tunnel/dialer.py``), not this registry's.
"""

from __future__ import annotations

import uuid

from server.tunnel.tunnel import AgentTunnel


class TunnelRegistry:
    def __init__(self) -> None:
        self._tunnels: dict[uuid.UUID, AgentTunnel] = {}

    def register(self, tunnel: AgentTunnel) -> None:
        previous = self._tunnels.get(tunnel.agent_id)
        self._tunnels[tunnel.agent_id] = tunnel
        if previous is not None and previous is not tunnel:
            previous.close("the agent opened a new tunnel")

    def unregister(self, tunnel: AgentTunnel) -> None:
        if self._tunnels.get(tunnel.agent_id) is tunnel:
            del self._tunnels[tunnel.agent_id]

    def get(self, agent_id: uuid.UUID) -> AgentTunnel | None:
        return self._tunnels.get(agent_id)

    def __len__(self) -> int:
        return len(self._tunnels)

    def close_all(self, reason: str) -> None:
        for tunnel in list(self._tunnels.values()):
            tunnel.close(reason)
        self._tunnels.clear()
