"""The admin token: from AGENTPLANE_ADMIN_TOKEN, or generated once into the
data directory (mode 0600) where the CLI on the same machine finds it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from server.config import Settings


def ensure_admin_token(settings: Settings) -> str:
    if settings.admin_token:
        return settings.admin_token
    path = settings.admin_token_path
    existing = read_admin_token(path)
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL: two servers starting at once must not hand out different tokens.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_admin_token(path) or token
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def read_admin_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
