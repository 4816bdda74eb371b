"""Runs every benchmark and prints its ratios (``make bench``)."""

from bench import (
    agent_rpcs,
    derp_relay,
    lock_isolation,
    logs_follow,
    logs_growth,
    logs_ingest,
    tailnet,
    wire_rpcs,
    workspace_agent,
    wsgi_servers,
)

if __name__ == "__main__":
    workspace_agent.main()
    wsgi_servers.main()
    agent_rpcs.main()
    logs_ingest.main()
    logs_follow.main()
    logs_growth.main()
    wire_rpcs.main()
    derp_relay.main()
    tailnet.main()
    lock_isolation.main()
