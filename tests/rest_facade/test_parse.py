"""Request bodies read as coderd reads them (``json.NewDecoder(body).Decode``):
the 400's ``detail`` is Go's error text, Go's grammar decides (no NaN, no
Infinity), and what follows the first value is not read."""

from __future__ import annotations

import pytest
from flask import Flask

from rest_facade import create_app
from rest_facade.core import CoreClient
from rest_facade.parse import read_json

# (body, Go's detail) — the texts of encoding/json's scanner and Decoder.
GO_ERRORS = [
    (b"", "EOF"),
    (b" \n\t", "EOF"),
    (b"{", "unexpected EOF"),
    (b'{"logs": [{"output": "a"', "unexpected EOF"),
    (b"x", "invalid character 'x' looking for beginning of value"),
    (b"{nope", "invalid character 'n' looking for beginning of object key string"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b'{"a": 1 "b": 2}', "invalid character '\"' after object key:value pair"),
    (b"[1 2]", "invalid character '2' after array element"),
    (b"[1,]", "invalid character ']' looking for beginning of value"),
    (b'"a\x01"', "invalid character '\\x01' in string literal"),
    (b'"\\q"', "invalid character 'q' in string escape code"),
    (b'"\\u12g4"', "invalid character 'g' in \\u hexadecimal character escape"),
    (b"-x", "invalid character 'x' in numeric literal"),
    (b"1.x", "invalid character 'x' after decimal point in numeric literal"),
    (b"1ex", "invalid character 'x' in exponent of numeric literal"),
    (b"trux", "invalid character 'x' in literal true (expecting 'e')"),
    (b"fals", "unexpected EOF"),
    (b"nulL", "invalid character 'L' in literal null (expecting 'l')"),
    (b"NaN", "invalid character 'N' looking for beginning of value"),
    (b'{"a": Infinity}', "invalid character 'I' looking for beginning of value"),
    (b"[-Infinity]", "invalid character 'I' in numeric literal"),
    (b"\xef\xbb\xbf{}", "invalid character '\u00ef' looking for beginning of value"),
    (b"\\", "invalid character '\\\\' looking for beginning of value"),
    (b"'a'", "invalid character '\\'' looking for beginning of value"),
    (b"\xa0", "invalid character '\\u00a0' looking for beginning of value"),
    (b"[01]", "invalid character '1' after array element"),
    (b"[" * 10_001, "invalid character '[' exceeded max depth"),
]


@pytest.fixture
def echo(settings):
    app: Flask = create_app(settings, client=CoreClient("127.0.0.1:1"))

    @app.post("/echo")
    def _echo():  # type: ignore[no-untyped-def]
        return {"got": read_json()}

    return app.test_client()


@pytest.mark.parametrize(("raw", "detail"), GO_ERRORS)
def test_invalid_json_details_are_gos(echo, raw: bytes, detail: str) -> None:
    resp = echo.post("/echo", data=raw)
    assert resp.status_code == 400
    assert resp.get_json() == {"message": "Request body must be valid JSON.", "detail": detail}


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'{"a": 1}', {"a": 1}),
        # Decode reads one value; what follows it is left unread.
        (b'{"a": 1} trailing', {"a": 1}),
        (b"{}}", {}),
        (b"0 1", 0),
        # Invalid UTF-8 in a string becomes U+FFFD, as Go's decoder does.
        (b'{"a": "\xff"}', {"a": "\ufffd"}),
        (b'{"a": "\\ud800"}', {"a": "\ufffd"}),
    ],
)
def test_what_go_accepts(echo, raw: bytes, value: object) -> None:
    resp = echo.post("/echo", data=raw)
    assert (resp.status_code, resp.get_json()) == (200, {"got": value})
