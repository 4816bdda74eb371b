"""Watching the core run: Prometheus series, the RPC access log, and the
service that hands the series to the facade."""
