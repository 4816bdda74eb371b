"""Stored times as protobuf Timestamps: the arithmetic agrees with the
library's FromDatetime, naive values are UTC, before-epoch values keep
non-negative nanos."""

from __future__ import annotations

import datetime as dt

import pytest
from google.protobuf import timestamp_pb2

from server.prototime import to_timestamp


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 11, 25, 6, 7, 8, 123456, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 25, 6, 7, 8, 123456),  # naive, as SQLite returns it
        dt.datetime(2026, 1, 1, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=5))),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(1960, 1, 1, 0, 0, 0, 1),
    ],
)
def test_matches_from_datetime(value: dt.datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    expected.FromDatetime(aware.astimezone(dt.UTC))
    got = to_timestamp(value)
    assert got == expected
    assert got is not None and 0 <= got.nanos < 1_000_000_000


def test_none_stays_none() -> None:
    assert to_timestamp(None) is None
