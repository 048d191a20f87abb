"""Bulk writes for the dispatch hot loop.

SQLAlchemy's per-row parameter processing (type decorators, UUID and datetime processors) costs
more than SQLite's own work at tens of thousands of rows per second. On SQLite these helpers
convert values once, in the exact storage format SQLAlchemy itself uses (UUIDs as 32-char hex,
datetimes as naive-UTC ``YYYY-MM-DD HH:MM:SS.ffffff`` text, JSON as text), and hand the rows to the
driver's ``executemany``. Other databases go through ordinary Core statements, whose drivers
adapt these types natively. Both paths write identical data (the test suite runs on both).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import JSON, Connection, Table, bindparam, update
from sqlalchemy.dialects import postgresql


def _sqlite_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware instant")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def sqlite_value(value: Any) -> Any:
    """A Python value in SQLite's storage format, as SQLAlchemy would have written it."""
    kind = type(value)
    if kind is uuid.UUID:
        return value.hex
    if kind is datetime:
        return _sqlite_datetime(value)
    if kind is dict or kind is list:
        return json.dumps(value)
    if isinstance(value, str | int | float | type(None)):
        return value.value if isinstance(value, Enum) else value
    raise TypeError(f"cannot store {kind.__name__} {value!r} in SQLite")


class _Converter:
    """Converts rows to SQLite tuples, remembering each datetime it formatted: a batch shares a
    handful of instants (``now``, a few due times) across thousands of rows."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.json_columns = {name for name in columns if isinstance(table.c[name].type, JSON)}
        self.instants: dict[datetime, str] = {}

    def value(self, name: str, value: Any) -> Any:
        if name in self.json_columns:
            return json.dumps(value)
        if type(value) is datetime:
            text = self.instants.get(value)
            if text is None:
                text = self.instants[value] = _sqlite_datetime(value)
            return text
        return sqlite_value(value)

    def row(self, row: Mapping[str, Any], names: Sequence[str] | None = None) -> tuple[Any, ...]:
        return tuple(self.value(name, row[name]) for name in (names or self.columns))


def insert_rows(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], *, ignore_duplicates: bool = False
) -> None:
    """INSERT many rows that all carry the same keys (``ON CONFLICT DO NOTHING`` if asked)."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        if conn.dialect.name == "postgresql" and ignore_duplicates:
            conn.execute(postgresql.insert(table).on_conflict_do_nothing(), list(rows))
        else:
            conn.execute(table.insert(), list(rows))
        return
    columns = list(rows[0].keys())
    verb = "INSERT OR IGNORE" if ignore_duplicates else "INSERT"
    sql = f"{verb} INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    convert = _Converter(table, columns)
    params: Any = [convert.row(row) for row in rows]
    conn.exec_driver_sql(sql, params)


def update_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    set_columns: Sequence[str],
    where: Mapping[str, str],
    constants: Mapping[str, Any] | None = None,
) -> int:
    """UPDATE many rows by key: ``rows`` carry ``set_columns`` and the ``where`` keys
    (``{column: row key}``); ``constants`` are the same for every row. Returns rows changed."""
    if not rows:
        return 0
    constants = dict(constants or {})
    if conn.dialect.name != "sqlite":
        statement = (
            update(table)
            .where(*(table.c[column] == bindparam(f"w_{key}") for column, key in where.items()))
            .values({name: bindparam(f"s_{name}") for name in set_columns} | constants)
        )
        core_params = [
            {f"s_{name}": row[name] for name in set_columns}
            | {f"w_{key}": row[key] for key in where.values()}
            for row in rows
        ]
        return conn.execute(statement, core_params).rowcount
    assignments = [f"{name} = ?" for name in set_columns] + [f"{name} = ?" for name in constants]
    conditions = [f"{column} = ?" for column in where]
    sql = f"UPDATE {table.name} SET {', '.join(assignments)} WHERE {' AND '.join(conditions)}"
    fixed = tuple(sqlite_value(v) for v in constants.values())
    convert = _Converter(table, list(set_columns))
    where_keys = list(where.values())
    params: Any = [convert.row(row) + fixed + tuple(sqlite_value(row[k]) for k in where_keys) for row in rows]
    return conn.exec_driver_sql(sql, params).rowcount
