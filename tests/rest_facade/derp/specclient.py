"""A DERP client written from Tailscale's derp package docs (frame layout,
the magic, the NaCl-boxed client info), independent of rest_facade/derp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct

from nacl.public import Box, PrivateKey, PublicKey

HDR = struct.Struct(">BI")
MAGIC = b"DERP\xf0\x9f\x94\x91"
SERVER_KEY, CLIENT_INFO, SERVER_INFO, SEND_PACKET, RECV_PACKET = 1, 2, 3, 4, 5
KEEP_ALIVE, NOTE_PREFERRED, PEER_GONE = 6, 7, 8
FORWARD_PACKET, PING, PONG = 0x0A, 0x12, 0x13
DISCO_MAGIC = b"TS\xf0\x9f\x92\xac"


class SpecDERPClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.key = PrivateKey.generate()
        self.public = bytes(self.key.public_key)
        self.server_key = b""
        self.server_info: dict = {}

    @classmethod
    async def connect(
        cls, port: int, *, login: bool = True, info: dict | None = None
    ) -> SpecDERPClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        if login:
            await client.login(info)
        return client

    async def frame(self) -> tuple[int, bytes]:
        kind, length = HDR.unpack(await self.reader.readexactly(5))
        return kind, await self.reader.readexactly(length)

    async def send_frame(self, kind: int, payload: bytes = b"") -> None:
        self.writer.write(HDR.pack(kind, len(payload)) + payload)
        await self.writer.drain()

    async def login(self, info: dict | None = None) -> None:
        kind, payload = await self.frame()
        assert kind == SERVER_KEY and payload[:8] == MAGIC and len(payload) >= 40
        self.server_key = payload[8:40]
        box = Box(self.key, PublicKey(self.server_key))
        sealed = box.encrypt(json.dumps(info or {"version": 2, "CanAckPings": True}).encode())
        await self.send_frame(CLIENT_INFO, self.public + bytes(sealed))
        kind, payload = await self.frame()
        assert kind == SERVER_INFO
        self.server_info = json.loads(box.decrypt(payload))

    async def send(self, dst: bytes, packet: bytes) -> None:
        await self.send_frame(SEND_PACKET, dst + packet)

    async def recv(self, *, skip_keepalive: bool = True) -> tuple[int, bytes]:
        while True:
            kind, payload = await self.frame()
            if skip_keepalive and kind == KEEP_ALIVE:
                continue
            return kind, payload

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
