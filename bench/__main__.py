"""Runs every benchmark and prints its ratios (``make bench``)."""

from bench import (
    agent_rpcs,
    lock_isolation,
    logs_follow,
    logs_growth,
    logs_ingest,
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
    lock_isolation.main()
