"""The facade's HTTP/1.1 front: connections on an asyncio loop, whole
requests handed to the Flask app on worker threads, long-lived connections
(WebSockets, Server-Sent Events, upgrades) carried on the loop."""
