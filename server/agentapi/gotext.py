"""Coder's agent-API errors print values the way Go's ``fmt`` does; these
reproduce the three forms its texts use, so ours read the same."""

from __future__ import annotations

import json
import uuid
from typing import Any


def quote(text: str) -> str:
    """Go's ``%q`` of a string (JSON's escaping is the same for the
    characters that matter here: quotes, backslashes, control characters)."""
    return json.dumps(text, ensure_ascii=False)


def quote_bytes(raw: bytes) -> str:
    """Go's ``%q`` of a byte slice: printable text kept, other bytes as \\xNN."""
    out = ['"']
    for byte in raw:
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    out.append('"')
    return "".join(out)


def enum_text(enum_type: Any, value: int) -> str:
    """Go's ``%q`` of a protobuf enum: its name in quotes, or the number in
    quotes when the value is not one the .proto declares."""
    try:
        return quote(enum_type.Name(value))
    except ValueError:
        return quote(str(value))


def uuid_from_bytes(raw: bytes) -> uuid.UUID:
    """``uuid.FromBytes``: exactly 16 bytes, else ValueError with Go's text."""
    if len(raw) != 16:
        raise ValueError(f"invalid UUID (got {len(raw)} bytes)")
    return uuid.UUID(bytes=raw)
