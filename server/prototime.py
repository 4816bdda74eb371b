"""Conversions between stored times and protobuf Timestamp/Duration."""

from __future__ import annotations

import datetime as dt

from google.protobuf import duration_pb2, timestamp_pb2

from server.clock import as_utc


def to_timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(as_utc(value))
    return ts


def seconds_duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)
