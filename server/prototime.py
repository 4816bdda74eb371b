"""Conversions between stored times and protobuf Timestamp/Duration."""

from __future__ import annotations

import datetime as dt

from google.protobuf import duration_pb2, timestamp_pb2

from server.errors import InvalidArgument

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)


def to_timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A stored time (naive values are UTC, as SQLite hands them back) as a
    Timestamp. Plain arithmetic instead of ``FromDatetime``: agent replies
    carry seven of these and the library call was most of their cost."""
    if value is None:
        return None
    delta = value - (_EPOCH_NAIVE if value.tzinfo is None else _EPOCH)
    # timedelta keeps seconds and microseconds non-negative, as Timestamp wants.
    return timestamp_pb2.Timestamp(
        seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000
    )


def from_timestamp(value: timestamp_pb2.Timestamp, field: str) -> dt.datetime:
    """A Timestamp a caller sent, as an aware UTC time; InvalidArgument
    naming ``field`` when it is none (seconds outside years 1-9999, nanos
    outside a second): a time nothing can store, not an internal error."""
    try:
        return value.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError) as err:
        raise InvalidArgument(f"Invalid {field}.", detail=str(err)) from None


def seconds_duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)
