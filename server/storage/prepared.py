"""Prepared statements for the lookups that start every call (and the log
budget claim, an UPDATE ... RETURNING on the hottest write).

``Connection.execute`` spends most of a point lookup in SQLAlchemy's
execution machinery (statement cache, execution context, result set-up),
not in the database: measured on SQLite, the agent-context lookup takes
83 us through it and 37 us here. A ``Prepared`` statement is compiled once
per dialect with SQLAlchemy itself, then run on the driver's cursor with
the same bind and result processors SQLAlchemy would apply, so rows decode
exactly as ``conn.execute(stmt).first()`` would (tests compare the two on
every backend). Driver errors are wrapped as SQLAlchemy's, and a dropped
connection is invalidated, as ``Connection.execute`` does.

An ORM ``Session`` falls back to the ordinary path. A write (a DML
statement with RETURNING) runs in the caller's transaction like any other
statement; its rows are never memoised.

``memo=N`` keeps the decoded rows of the last N distinct records, keyed by
the record exactly as the driver returned it: the same stored values decode
to the same row, so a hit is always right, whatever changed in between (a
changed row is a different record). Where a driver already returns
unhashable values (PostgreSQL's JSON as dicts) nothing is memoised. Memoised
rows are shared between callers: treat rows as read-only, as everywhere.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session


@dataclasses.dataclass(frozen=True)
class _Plan:
    sql: str
    compiled: Any
    positions: tuple[str, ...] | None  # bind names in order (positional drivers)
    bind: dict[str, Callable[[Any], Any]]
    decode: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column index, processor)
    row: Any  # namedtuple class with the selected columns' keys
    memo: dict[Any, Any] = dataclasses.field(default_factory=dict)  # record -> row


_PLANS_ATTR = "_agentplane_prepared_plans"


def remember(memo: dict[Any, Any], key: Any, value: Any, *, size: int) -> None:
    """Puts key -> value in a memo kept to `size` entries, oldest out (dicts
    keep insertion order). Threads may share the memo: a racing eviction is
    given up, not an error."""
    memo[key] = value
    while len(memo) > size:
        try:
            del memo[next(iter(memo))]
        except (KeyError, RuntimeError, StopIteration):  # another thread evicted it
            break


class Prepared:
    """A SELECT (or a DML statement with RETURNING) compiled once per dialect
    and run on the driver."""

    def __init__(self, statement: sa.Select[Any] | sa.UpdateBase, *, memo: int = 0) -> None:
        if memo and not isinstance(statement, sa.Select):
            raise ValueError("only reads may memoise their rows")
        self.statement = statement
        self._memo_size = memo
        self._columns = (
            statement.selected_columns
            if isinstance(statement, sa.Select)
            else statement.exported_columns
        )

    def _plan(self, dialect: sa.Dialect) -> _Plan:
        # Plans live on the dialect (one per engine), so they go with it.
        plans: dict[Prepared, _Plan] | None = dialect.__dict__.get(_PLANS_ATTR)
        if plans is None:
            plans = dialect.__dict__.setdefault(_PLANS_ATTR, {})
        plan = plans.get(self)
        if plan is not None:
            return plan
        compiled = self.statement.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("prepared statements take plain binds, not expanding ones")
        keys = list(self._columns.keys())
        if None in keys or len(set(keys)) != len(keys):
            raise ValueError(f"duplicate column keys in a prepared statement: {keys}")
        bind = {}
        # bind_names maps every bind (named or a literal's anonymous one) to
        # the name construct_params() gives its value.
        for param, name in compiled.bind_names.items():
            processor = param.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                bind[name] = processor
        decode = []
        for index, column in enumerate(self._columns):
            impl = column.type.dialect_impl(dialect)
            if isinstance(impl, sa.Numeric):
                # Their processors depend on the driver's type code, which a
                # plan made before the first execution cannot know.
                raise ValueError("prepared statements do not select Numeric/Float columns")
            processor = impl.result_processor(dialect, None)
            if processor is not None:
                decode.append((index, processor))
        plan = _Plan(
            sql=compiled.string,
            compiled=compiled,
            positions=tuple(compiled.positiontup or ()) if compiled.positional else None,
            bind=bind,
            decode=tuple(decode),
            row=collections.namedtuple("PreparedRow", keys),  # type: ignore[misc]
        )
        plans[self] = plan
        return plan

    def _rows(self, conn: sa.Connection, params: Mapping[str, Any], many: bool) -> list[Any]:
        dialect = conn.dialect
        plan = self._plan(dialect)
        values = plan.compiled.construct_params(params)
        for name, processor in plan.bind.items():
            values[name] = processor(values[name])
        args: Any = (
            [values[name] for name in plan.positions] if plan.positions is not None else values
        )
        dbapi_conn = conn.connection.dbapi_connection
        assert dbapi_conn is not None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(plan.sql, args)
            raw = cursor.fetchall() if many else [cursor.fetchone()]
        except dialect.loaded_dbapi.Error as err:
            disconnect = dialect.is_disconnect(err, dbapi_conn, cursor)
            if disconnect:
                conn.invalidate(err)
            raise sa.exc.DBAPIError.instance(
                plan.sql,
                args,
                err,
                dialect.loaded_dbapi.Error,
                hide_parameters=conn.engine.hide_parameters,
                connection_invalidated=disconnect,
                dialect=dialect,
            ) from err
        finally:
            cursor.close()
        out = []
        for record in raw:
            if record is None:
                continue
            if self._memo_size:
                try:
                    row = plan.memo.get(record)
                except TypeError:  # unhashable values: decode every time
                    row = None
                    key = None
                else:
                    key = record
                if row is not None:
                    out.append(row)
                    continue
                row = self._decode(plan, record)
                if key is not None:
                    remember(plan.memo, key, row, size=self._memo_size)
                out.append(row)
            else:
                out.append(self._decode(plan, record))
        return out

    @staticmethod
    def _decode(plan: _Plan, record: Any) -> Any:
        if plan.decode:
            record = list(record)
            for index, processor in plan.decode:
                value = record[index]
                if value is not None:
                    record[index] = processor(value)
        return plan.row._make(record)

    def first(self, conn: sa.Connection | Session, params: Mapping[str, Any]) -> Any:
        """The first row (attribute access like a Row), or None."""
        if not isinstance(conn, sa.Connection):
            return conn.execute(self.statement, params).first()  # type: ignore[call-overload]
        rows = self._rows(conn, params, many=False)
        return rows[0] if rows else None

    def all(self, conn: sa.Connection | Session, params: Mapping[str, Any]) -> list[Any]:
        if not isinstance(conn, sa.Connection):
            return list(conn.execute(self.statement, params).all())  # type: ignore[call-overload]
        return self._rows(conn, params, many=True)
