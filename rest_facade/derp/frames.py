"""DERP's wire format (Tailscale's ``derp`` package, protocol version 2), as
the embedded relay reads and writes it.

Every frame is a 1-byte type and a 4-byte big-endian length, then that many
bytes. The login: the server sends ``SERVER_KEY`` (the 8-byte magic
"DERP🔑" and its 32-byte curve25519 public key); the client answers
``CLIENT_INFO`` (its 32-byte public key, then a NaCl box, sealed to the
server's key: 24-byte nonce and ciphertext of a JSON object such as
``{"version": 2, "CanAckPings": true}``); the server replies ``SERVER_INFO``
(a box sealed to the client: ``{"version": 2}``). Then the client sends
``SEND_PACKET`` (32-byte destination key + packet) and the server delivers
``RECV_PACKET`` (32-byte source key + packet); ``KEEP_ALIVE`` (empty) and
``PING``/``PONG`` (8 bytes echoed) keep it alive; ``NOTE_PREFERRED`` (1 byte)
says whether this is the client's home relay; ``PEER_GONE`` (32-byte key and
a reason byte: 0 disconnected, 1 not here) tells a client a peer it talked
to has left.
"""

from __future__ import annotations

import struct

MAGIC = "DERP🔑".encode()  # 8 bytes: 44 45 52 50 f0 9f 94 91
PROTOCOL_VERSION = 2
KEY_LEN = 32
NONCE_LEN = 24
FRAME_HEADER = struct.Struct(">BI")
FRAME_HEADER_LEN = FRAME_HEADER.size

SERVER_KEY = 0x01
CLIENT_INFO = 0x02
SERVER_INFO = 0x03
SEND_PACKET = 0x04
RECV_PACKET = 0x05
KEEP_ALIVE = 0x06
NOTE_PREFERRED = 0x07
PEER_GONE = 0x08
PEER_PRESENT = 0x09
FORWARD_PACKET = 0x0A
WATCH_CONNS = 0x10
CLOSE_PEER = 0x11
PING = 0x12
PONG = 0x13
HEALTH = 0x14
RESTARTING = 0x15

PEER_GONE_DISCONNECTED = 0x00
PEER_GONE_NOT_HERE = 0x01

# derp.MaxPacketSize: the largest packet a client may relay.
MAX_PACKET_SIZE = 64 << 10
# The server refuses a client-info frame above this (derp_server.go).
MAX_CLIENT_INFO_LEN = 256 << 10
# A ping body longer than this is unreasonable (derp_server.go).
MAX_PING_LEN = 1000
PING_LEN = 8

# Tailscale's disco messages start with this magic, then the sender's key
# and a nonce; the relay answers a disco packet for an unknown peer with
# PEER_GONE "not here" (the client then stops using this path).
DISCO_MAGIC = "TS💬".encode()
DISCO_HEADER_LEN = len(DISCO_MAGIC) + KEY_LEN + NONCE_LEN


def frame(kind: int, payload: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(kind, len(payload)) + payload


def looks_like_disco(packet: bytes) -> bool:
    return len(packet) >= DISCO_HEADER_LEN and packet.startswith(DISCO_MAGIC)
