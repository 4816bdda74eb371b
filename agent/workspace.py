"""Where the agent runs things: its directory, environment and shell, from
the manifest, as Coder's agent builds them (``updateCommandEnv``,
``expandPathToAbs``): Coder's own variables, then the agent's environment,
then the manifest's variables (with ``$VAR`` expanded), then the agent token.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from coder.agent.v2 import agent_pb2


def expand_directory(path: str) -> str:
    """Coder's expandPathToAbs: ``~`` and ``$VARS`` expanded, relative paths
    taken from the home directory; empty stays empty."""
    if not path:
        return ""
    if path.startswith("~"):
        path = str(Path.home()) + path[1:]
    path = os.path.expandvars(path)
    if not os.path.isabs(path):
        path = os.path.join(str(Path.home()), path)
    return os.path.normpath(path)


def user_shell() -> str:
    try:
        shell = pwd.getpwuid(os.getuid()).pw_shell
    except KeyError:
        shell = ""
    if shell and os.path.exists(shell) and not shell.endswith(("nologin", "false")):
        return shell
    return shutil.which("bash") or "/bin/sh"


class Workspace:
    def __init__(self, manifest: agent_pb2.Manifest, *, token: str) -> None:
        self.directory = expand_directory(manifest.directory)
        self.shell = user_shell()
        env = {
            "CODER": "true",
            "CODER_WORKSPACE_NAME": manifest.workspace_name,
            "CODER_WORKSPACE_AGENT_NAME": manifest.agent_name,
            "CODER_WORKSPACE_OWNER_NAME": manifest.owner_username,
        }
        # The agent's own environment may override Coder's defaults ...
        env.update(os.environ)
        # ... the manifest overrides both, with $VARS expanded ...
        for key, value in manifest.environment_variables.items():
            env[key] = os.path.expandvars(value)
        # ... and the token is always the agent's.
        env["CODER_AGENT_TOKEN"] = token
        self.env = env

    def cwd(self) -> str:
        """The agent's directory when it exists, else the home directory (a
        script must still run when the template names a directory that is
        not there yet, as Coder's does)."""
        if self.directory and os.path.isdir(self.directory):
            return self.directory
        return str(Path.home())
