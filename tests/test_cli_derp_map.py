"""`agentplane derp-map set --file FILE` against a real server process: the
stored map is replaced (the REST connection info shows it), and a bad file
is a clear error with a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.processes import Server

pytestmark = pytest.mark.timeout(120)

NEW_MAP = {
    "regions": {
        "5": {
            "regionID": 5,
            "regionCode": "syd",
            "regionName": "Sydney",
            "nodes": [{"name": "5a", "regionID": 5, "hostName": "derp5.example.com"}],
        }
    }
}


def test_derp_map_set(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", f"sqlite:///{tmp_path / 'a.db'}").start()
    try:
        path = tmp_path / "derp.json"
        path.write_text(json.dumps(NEW_MAP))
        done = server.cli("derp-map", "set", "--file", str(path))
        assert json.loads(done.stdout) == {"region_ids": [5]}
        key = json.loads(server.cli("users", "create", "--username", "alice").stdout)["api_key"]
        status, body = server.get("/workspaceagents/connection", key)
        assert status == 200 and body["derp_map"]["regions"] == NEW_MAP["regions"]

        path.write_text('{"regions": {"x": {}}}')
        bad = server.cli("derp-map", "set", "--file", str(path), ok=False)
        assert bad.returncode == 1
        assert "Validation failed." in bad.stderr and "derp_map:" in bad.stderr
        missing = server.cli("derp-map", "set", "--file", str(tmp_path / "nope"), ok=False)
        assert missing.returncode == 1 and "cannot read DERP map" in missing.stderr
    finally:
        server.stop()
