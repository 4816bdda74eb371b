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


def test_maps_and_floats_like_go() -> None:
    from coder.tailnet.v2 import tailnet_pb2

    from rest_facade.coderjson import derp_map, go_float, sorted_map

    assert dumps(sorted_map({"b": "1", "a": "2"})) == '{"a":"2","b":"1"}'
    assert [go_float(x) for x in (12.0, 0.5, -3.0)] == [12, 0.5, -3]
    assert dumps({"x": go_float(12.0)}) == '{"x":12}'
    msg = tailnet_pb2.DERPMap()
    for region_id in (9, 10):
        msg.regions[region_id].region_id = region_id
    msg.home_params.region_score[9] = 1.0
    msg.home_params.region_score[10] = 0.5
    out = derp_map(msg)
    # Go sorts integer map keys by their string form.
    assert list(out["regions"]) == ["10", "9"]
    assert out["homeParams"]["regionScore"] == {"10": 0.5, "9": 1}
