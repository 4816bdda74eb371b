"""The embedded DERP relay (``GET /derp``, region 999 of the default DERP
map): Tailscale's DERP protocol (``frames``) on a byte transport, the relay
and its routing table (``relay``), and the deployment's server key fetched
from the core (``serverkey``). Independent of HTTP: the front upgrades the
connection and hands the relay a transport."""
