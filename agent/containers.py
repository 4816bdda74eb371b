"""Containers and devcontainers, through the Docker and devcontainer CLIs
when they are installed (``agent/agentcontainers``): ``docker ps`` +
``docker inspect`` give the containers, in the shape of
``codersdk.WorkspaceAgentContainer``; containers carrying the
``devcontainer.local_folder`` label (set by the devcontainer CLI) are the
devcontainers. Without Docker, or when Docker cannot answer, the lists are
empty and a warning says why: never an error.

Deleting a devcontainer removes its container (``docker rm -f``);
recreating runs ``devcontainer up --remove-existing-container`` in the
background (the devcontainer shows ``starting``, then ``running`` or
``error``). Watchers get the full list again whenever it changes (Docker is
asked every ``WATCH_SECONDS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import uuid
from typing import Any

from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb

log = logging.getLogger("agentplane.agent")

WATCH_SECONDS = 2.0
CLI_TIMEOUT = 20.0
UP_TIMEOUT = 3600.0
LOCAL_FOLDER_LABEL = "devcontainer.local_folder"
CONFIG_FILE_LABEL = "devcontainer.config_file"


class DevcontainerError(Exception):
    def __init__(self, kind: int, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail


def devcontainer_id(folder: str) -> str:
    """A devcontainer's id: stable for its workspace folder."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"devcontainer:{folder}"))


def _created(text: str) -> dt.datetime | None:
    # Docker: "2024-05-01T10:11:12.123456789Z"; Python reads microseconds.
    if not text:
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        t = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    if frac.isdigit():
        t = t.replace(microsecond=int(frac[:6].ljust(6, "0")))
    return t


def container_from_inspect(data: dict[str, Any]) -> tpb.Container:
    config = data.get("Config") or {}
    state = data.get("State") or {}
    container = tpb.Container(
        id=data.get("Id", ""),
        name=str(data.get("Name", "")).lstrip("/"),
        image=config.get("Image", ""),
        labels={str(k): str(v) for k, v in (config.get("Labels") or {}).items()},
        running=bool(state.get("Running")),
        status=state.get("Status", ""),
        volumes={
            str(m.get("Source", "")): str(m.get("Destination", ""))
            for m in data.get("Mounts") or []
            if m.get("Source")
        },
    )
    created = _created(str(data.get("Created", "")))
    if created is not None:
        container.created_at.FromDatetime(created)
    ports = ((data.get("NetworkSettings") or {}).get("Ports")) or {}
    for spec, bindings in sorted(ports.items()):
        port, _, network = spec.partition("/")
        for binding in bindings or []:
            with contextlib.suppress(ValueError):
                container.ports.add(
                    port=int(port),
                    network=network or "tcp",
                    host_ip=binding.get("HostIp", ""),
                    host_port=int(binding.get("HostPort") or 0),
                )
    return container


class Containers:
    def __init__(self, agent_info: tpb.DevcontainerAgent | None = None) -> None:
        self._starting: dict[str, str] = {}  # devcontainer id -> error ("" = in progress)
        self._agent = agent_info
        self._tasks: set[asyncio.Task[None]] = set()

    async def _run(self, *argv: str, timeout: float = CLI_TIMEOUT) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return -1, "", f"{argv[0]} did not answer within {timeout:.0f} s"
        return proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    async def list(self) -> tpb.ContainerList:
        listing = tpb.ContainerList()
        docker = shutil.which("docker")
        if docker is None:
            listing.warnings.append("Docker is not installed: no containers are listed.")
            return listing
        code, out, err = await self._run(docker, "ps", "--all", "--quiet", "--no-trunc")
        if code != 0:
            listing.warnings.append(f"docker ps failed: {(err or out).strip()}")
            return listing
        ids = out.split()
        if ids:
            code, out, err = await self._run(docker, "inspect", *ids)
            if code != 0:
                listing.warnings.append(f"docker inspect failed: {(err or out).strip()}")
                return listing
            try:
                inspected = json.loads(out)
            except ValueError:
                listing.warnings.append("docker inspect returned something that is not JSON")
                return listing
            for data in inspected:
                if isinstance(data, dict):
                    listing.containers.append(container_from_inspect(data))
        self._devcontainers(listing)
        return listing

    def _devcontainers(self, listing: tpb.ContainerList) -> None:
        seen = set()
        for container in listing.containers:
            folder = container.labels.get(LOCAL_FOLDER_LABEL)
            if not folder or folder in seen:
                continue
            seen.add(folder)
            dc_id = devcontainer_id(folder)
            dc = tpb.Devcontainer(
                id=dc_id,
                name=os.path.basename(folder.rstrip("/")) or folder,
                workspace_folder=folder,
                config_path=container.labels.get(CONFIG_FILE_LABEL, ""),
                status="running" if container.running else "stopped",
                container=container,
            )
            if self._agent is not None:
                dc.agent.CopyFrom(self._agent)
            pending = self._starting.get(dc_id)
            if pending == "":
                dc.status = "starting"
            elif pending:
                dc.status, dc.error = "error", pending
            listing.devcontainers.append(dc)

    async def _find(self, devcontainer: str) -> tpb.Devcontainer:
        listing = await self.list()
        for dc in listing.devcontainers:
            if dc.id == devcontainer:
                return dc
        raise DevcontainerError(
            tpb.Failure.Kind.KIND_NOT_FOUND,
            "Devcontainer not found.",
            f"Could not find devcontainer {devcontainer!r}.",
        )

    async def delete(self, devcontainer: str) -> None:
        dc = await self._find(devcontainer)
        if self._starting.get(devcontainer) == "":
            raise DevcontainerError(
                tpb.Failure.Kind.KIND_CONFLICT,
                "Devcontainer recreation already in progress",
                f"Recreation for devcontainer {dc.name!r} is already underway.",
            )
        code, out, err = await self._run("docker", "rm", "-f", dc.container.id)
        if code != 0:
            raise DevcontainerError(
                tpb.Failure.Kind.KIND_INTERNAL, "Could not delete the devcontainer.", err or out
            )

    async def recreate(self, devcontainer: str) -> None:
        dc = await self._find(devcontainer)
        if self._starting.get(devcontainer) == "":
            raise DevcontainerError(
                tpb.Failure.Kind.KIND_CONFLICT,
                "Devcontainer recreation already in progress",
                f"Recreation for devcontainer {dc.name!r} is already underway.",
            )
        cli = shutil.which("devcontainer")
        if cli is None:
            raise DevcontainerError(
                tpb.Failure.Kind.KIND_INTERNAL,
                "The devcontainer CLI is not installed.",
                "Install @devcontainers/cli to recreate devcontainers.",
            )
        self._starting[devcontainer] = ""
        argv = [cli, "up", "--workspace-folder", dc.workspace_folder]
        if dc.config_path:
            argv += ["--config", dc.config_path]
        argv.append("--remove-existing-container")

        async def up() -> None:
            code, out, err = await self._run(*argv, timeout=UP_TIMEOUT)
            if code == 0:
                self._starting.pop(devcontainer, None)
            else:
                self._starting[devcontainer] = (err or out).strip()[-1024:] or f"exit {code}"

        task = asyncio.create_task(up())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
