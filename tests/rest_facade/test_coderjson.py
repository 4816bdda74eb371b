"""The facade's JSON is Go's: compact, UTF-8 kept, HTML characters and the
JS line separators escaped, a newline after the value, coderd's content type."""

from __future__ import annotations

import json

from rest_facade.coderjson import CONTENT_TYPE, dumps, dumps_bytes


def test_escapes_like_go_encoder_with_escape_html() -> None:
    text = 'a<b>&c é \u2028\u2029 "q" \\ \n'
    out = dumps({"s": text})
    assert out == '{"s":"a\\u003cb\\u003e\\u0026c é \\u2028\\u2029 \\"q\\" \\\\ \\n"}'
    assert json.loads(out) == {"s": text}


def test_compact_ordered_and_non_string_keys() -> None:
    assert dumps({"b": 1, "a": [True, None, 1.5], 3: "x"}) == (
        '{"b":1,"a":[true,null,1.5],"3":"x"}'
    )
    assert dumps_bytes([]) == b"[]"


def test_rest_responses_are_framed_like_coderd(rest, provision) -> None:
    ws = provision.workspace()
    resp = rest.get(
        f"/api/v2/workspaceagents/{ws.agent('main').id}",
        headers={"Coder-Session-Token": ws.api_key},
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    assert resp.data.endswith(b"}\n") and resp.data.count(b"\n") == 1
    missing = rest.get("/api/v2/workspaceagents/not-a-uuid")
    assert missing.headers["Content-Type"] == CONTENT_TYPE
    assert missing.data.endswith(b"}\n")
