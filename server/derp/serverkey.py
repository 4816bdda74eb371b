"""The deployment's DERP server key (``agentplane.derp.v1.DERPService/
GetServerKey``): generated on first use and stored, so that every replica's
embedded relay presents the same key; Tailscale clients pin a relay's key
per region and would refuse a replica with another one."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from server.clock import Clock
from server.storage import derpkey as store
from server.storage.db import Database

KEY_BYTES = 32


def new_private_key() -> bytes:
    """A curve25519 private key, clamped as Tailscale's key.NewNode does."""
    key = bytearray(os.urandom(KEY_BYTES))
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return bytes(key)


def public_key(private_key: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(private_key)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def get_server_key(db: Database, clock: Clock) -> tuple[bytes, bytes]:
    """(private, public): the stored key pair, created when there is none."""
    found = db.read_retrying(store.get_derp_server_key)
    if found is None:
        with db.write() as conn:
            store.insert_derp_server_key_if_absent(
                conn, private_key=new_private_key(), now=clock.now()
            )
            # Whichever replica's insert won, this is the deployment's key.
            found = store.get_derp_server_key(conn)
        assert found is not None
    return found, public_key(found)
