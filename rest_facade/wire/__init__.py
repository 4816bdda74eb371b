"""Coder's own wire, beneath the HTTP front: yamux sessions (``yamux``) over
a byte transport (``transport``), dRPC on their streams (``drpc``), the
bridge from dRPC to the gRPC core (``bridge``) and the API version rules
(``apiversion``). Independent of HTTP: the front hands these a transport."""
