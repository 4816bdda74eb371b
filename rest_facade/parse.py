"""Reading a request the way coderd does: where the session token comes
from, and JSON bodies with Coder's 400 on invalid JSON — its ``detail`` in
the words of Go's ``json.Decoder`` (coderd's ``httpapi.Read``)."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from flask import abort, request

from rest_facade.coderjson import without_lone_surrogates
from rest_facade.errors import error_response

INVALID_JSON = "Request body must be valid JSON."
SESSION_COOKIE = "coder_session_token"
SESSION_HEADER = "Coder-Session-Token"


def session_token() -> str | None:
    """Coder's precedence: cookie, query parameter, header, then Bearer."""
    token = request.cookies.get(SESSION_COOKIE) or request.args.get(SESSION_COOKIE)
    if token:
        return token
    token = request.headers.get(SESSION_HEADER)
    if token:
        return token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def wants_websocket() -> bool:
    """The client asked to upgrade to a WebSocket (the front keeps the
    Upgrade header out of werkzeug's sight and passes it on here)."""
    from rest_facade.serving.wsgi import UPGRADE_KEY

    return request.environ.get(UPGRADE_KEY) == "websocket"


def wants_event_stream() -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def read_json() -> Any:
    """The decoded body, or a 400 in Coder's envelope."""
    try:
        return decode_json(request.get_data(cache=False))
    except GoJSONError as err:
        abort(error_response(400, INVALID_JSON, detail=str(err)))


class GoJSONError(ValueError):
    """A body Go's json.Decoder refuses; the text is Go's error text."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's extension; Go refuses it


class GoNumber(float):
    """A JSON number with a fraction or exponent, as Go's float64 reads it,
    keeping its text: Go's "cannot unmarshal number 1e400 into ..." errors
    quote the literal (Python would show inf, or 1e+20)."""

    text: str

    def __new__(cls, text: str) -> GoNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number


def _go_int(text: str) -> int | float:
    # Python refuses integers of more than 4300 digits; Go reads such a
    # number as a float64 (+Inf), which the route then refuses as a number.
    return int(text) if len(text) <= 4000 else GoNumber(text)


def decode_json(raw: bytes) -> Any:
    """The first JSON value of ``raw`` as coderd's ``json.NewDecoder(body).
    Decode`` reads it (what follows that value is not read, as in Go), or
    ``GoJSONError`` with Go's message: ``EOF`` for an empty body,
    ``unexpected EOF`` for one cut short, ``invalid character 'x' looking
    for beginning of value`` and the scanner's other texts.

    The common case costs one C-speed parse; only a body Python refuses is
    scanned again as Go would (Python also takes NaN and Infinity, which Go
    refuses, and refuses trailing data and invalid UTF-8, which Go takes)."""
    body: Any = None
    try:
        body = json.loads(
            raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=GoNumber
        )
    except (ValueError, RecursionError):
        end = go_json_scan(raw)
        try:
            body = json.loads(
                raw[:end].decode("utf-8", "replace"), parse_int=_go_int, parse_float=GoNumber
            )
        except RecursionError:
            # Go nests up to 10,000 levels; Python's parser stops sooner.
            raise GoJSONError("json: nesting too deep") from None
    # Only an escape or an encoded surrogate can carry a lone surrogate.
    if b"\\u" in raw or b"\xed" in raw:
        body = without_lone_surrogates(body)
    return body


# Go's scanner (encoding/json/scanner.go), as far as its messages go: the
# same states, contexts and byte quoting, written as a loop that skips
# whitespace, string runs and digit runs with regular expressions.
_SPACES = re.compile(rb"[ \t\r\n]*")
_STRING_RUN = re.compile(rb'[^"\\\x00-\x1f]*')
_DIGITS = re.compile(rb"[0-9]*")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'bfnrt\\/"')
_LITERALS = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}
MAX_DEPTH = 10_000
_GO_CONTROL = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}

# What the scanner expects next, and what follows a value in a container.
_VALUE, _VALUE_OR_CLOSE, _KEY_OR_CLOSE, _KEY, _END = range(5)
_IN_KEY, _IN_VALUE, _IN_ARRAY = range(3)


def _quote_char(c: int) -> str:
    """Go's quoteChar: the byte as a rune literal, strconv.Quote's escapes."""
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    if c == 0x5C:
        return "'\\\\'"
    if 0x20 <= c < 0x7F:
        return f"'{chr(c)}'"
    if c < 0x80:
        text = _GO_CONTROL.get(c) or "\\x" + format(c, "02x")
        return f"'{text}'"
    # A byte past ASCII is quoted as the Latin-1 rune of that number.
    ch = chr(c)
    return f"'{ch}'" if unicodedata.category(ch)[0] in "LMNPS" else "'\\u" + format(c, "04x") + "'"


def _invalid(raw: bytes, i: int, context: str) -> GoJSONError:
    return GoJSONError(f"invalid character {_quote_char(raw[i])} {context}")


def go_json_scan(raw: bytes) -> int:
    """Where the first JSON value of ``raw`` ends, as Go's Decoder finds
    it; ``GoJSONError`` with Go's text where Go fails first."""
    n = len(raw)
    stack: list[int] = []
    state = _VALUE
    i = 0
    started = False
    while True:
        i = _SPACES.match(raw, i).end()  # type: ignore[union-attr]
        if i >= n:
            if state == _END and not stack and started:
                return i
            raise GoJSONError("unexpected EOF" if started else "EOF")
        started = True
        c = raw[i]
        if state == _END:
            top = stack[-1]
            if top == _IN_KEY:
                if c != 0x3A:  # :
                    raise _invalid(raw, i, "after object key")
                stack[-1] = _IN_VALUE
                state = _VALUE
                i += 1
                continue
            if c == 0x2C:  # ,
                if top == _IN_VALUE:
                    stack[-1] = _IN_KEY
                    state = _KEY
                else:
                    state = _VALUE
                i += 1
                continue
            if c == (0x7D if top == _IN_VALUE else 0x5D):  # } or ]
                stack.pop()
                i += 1
                if not stack:
                    return i
                continue
            raise _invalid(
                raw, i, "after object key:value pair" if top == _IN_VALUE else "after array element"
            )
        if (state == _VALUE_OR_CLOSE and c == 0x5D) or (state == _KEY_OR_CLOSE and c == 0x7D):
            stack.pop()
            state = _END
            i += 1
            if not stack:
                return i
            continue
        if state in (_KEY_OR_CLOSE, _KEY):
            if c != 0x22:
                raise _invalid(raw, i, "looking for beginning of object key string")
            i = _scan_string(raw, i)
            state = _END
            continue
        if c in (0x7B, 0x5B):  # { [
            stack.append(_IN_KEY if c == 0x7B else _IN_ARRAY)
            if len(stack) > MAX_DEPTH:
                raise _invalid(raw, i, "exceeded max depth")
            state = _KEY_OR_CLOSE if c == 0x7B else _VALUE_OR_CLOSE
            i += 1
            continue
        if c == 0x22:
            i = _scan_string(raw, i)
        elif c == 0x2D or 0x30 <= c <= 0x39:
            i = _scan_number(raw, i)
        elif c in _LITERALS:
            i = _scan_literal(raw, i, _LITERALS[c])
        else:
            raise _invalid(raw, i, "looking for beginning of value")
        if not stack:
            return i
        state = _END


def _scan_string(raw: bytes, i: int) -> int:
    n = len(raw)
    i += 1
    while True:
        i = _STRING_RUN.match(raw, i).end()  # type: ignore[union-attr]
        if i >= n:
            raise GoJSONError("unexpected EOF")
        c = raw[i]
        if c == 0x22:
            return i + 1
        if c != 0x5C:
            raise _invalid(raw, i, "in string literal")
        i += 1
        if i >= n:
            raise GoJSONError("unexpected EOF")
        if raw[i] in _ESCAPES:
            i += 1
            continue
        if raw[i] != 0x75:  # u
            raise _invalid(raw, i, "in string escape code")
        for k in range(1, 5):
            if i + k >= n:
                raise GoJSONError("unexpected EOF")
            if raw[i + k] not in _HEX:
                raise _invalid(raw, i + k, "in \\u hexadecimal character escape")
        i += 5


def _digit_at(raw: bytes, i: int) -> bool:
    if i >= len(raw):
        raise GoJSONError("unexpected EOF")
    return 0x30 <= raw[i] <= 0x39


def _scan_number(raw: bytes, i: int) -> int:
    n = len(raw)
    if raw[i] == 0x2D:  # -
        i += 1
        if not _digit_at(raw, i):
            raise _invalid(raw, i, "in numeric literal")
    i = i + 1 if raw[i] == 0x30 else _DIGITS.match(raw, i).end()  # type: ignore[union-attr]
    if i < n and raw[i] == 0x2E:  # .
        i += 1
        if not _digit_at(raw, i):
            raise _invalid(raw, i, "after decimal point in numeric literal")
        i = _DIGITS.match(raw, i).end()  # type: ignore[union-attr]
    if i < n and raw[i] in (0x65, 0x45):  # e E
        i += 1
        if i < n and raw[i] in (0x2B, 0x2D):
            i += 1
        if not _digit_at(raw, i):
            raise _invalid(raw, i, "in exponent of numeric literal")
        i = _DIGITS.match(raw, i).end()  # type: ignore[union-attr]
    return i


def _scan_literal(raw: bytes, i: int, word: bytes) -> int:
    for k in range(1, len(word)):
        if i + k >= len(raw):
            raise GoJSONError("unexpected EOF")
        if raw[i + k] != word[k]:
            expected = chr(word[k])
            raise _invalid(raw, i + k, f"in literal {word.decode()} (expecting '{expected}')")
    return i + len(word)


def go_json_kind(value: object) -> str:
    """The word Go's encoding/json uses for a JSON value in its "cannot
    unmarshal <kind> into ..." errors, which Coder passes on as `detail`."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"
