"""Bulk writes and reads for the dispatch hot loop.

SQLAlchemy's per-row parameter processing (type decorators, UUID and datetime processors) costs
more than SQLite's own work at tens of thousands of rows per second. On SQLite these helpers
convert values once, in the exact storage format SQLAlchemy itself uses (UUIDs as 32-char hex,
datetimes as naive-UTC ``YYYY-MM-DD HH:MM:SS.ffffff`` text, JSON as text), and hand the rows to the
driver's ``executemany``. Other databases go through ordinary Core statements, whose drivers
adapt these types natively. Both paths write identical data (the test suite runs on both).
:class:`SqliteReader` is the way back, for the batch reads of the same loop.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from operator import itemgetter
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Uuid,
    bindparam,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

In = TypeVar("In")
Out = TypeVar("Out")


def sqlite_instant(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware instant")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def sqlite_value(value: Any) -> Any:
    """A Python value in SQLite's storage format, as SQLAlchemy would have written it."""
    kind = type(value)
    if kind is uuid.UUID:
        return value.hex
    if kind is datetime:
        return sqlite_instant(value)
    if kind is dict or kind is list:
        return json.dumps(value)
    if isinstance(value, str | int | float | type(None)):
        return value.value if isinstance(value, Enum) else value
    raise TypeError(f"cannot store {kind.__name__} {value!r} in SQLite")


class _OncePerValue(Generic[In, Out]):
    """Converts values with ``convert``, each distinct value once (``None`` stays ``None``): a
    batch shares a handful of instants (``now``, a few due times) across thousands of rows."""

    __slots__ = ("_convert", "_done")

    def __init__(self, convert: Callable[[In], Out]) -> None:
        self._convert = convert
        self._done: dict[In, Out] = {}

    def instant(self, value: In | None) -> Out | None:
        if value is None:
            return None
        converted = self._done.get(value)
        if converted is None:
            converted = self._done[value] = self._convert(value)
        return converted


class SqliteWriter(_OncePerValue[datetime, str]):
    """Aware datetimes to SQLite's storage format (``sqlite_instant``). :class:`SqliteReader`
    is the way back."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(sqlite_instant)


class _Converter:
    """Converts rows to SQLite tuples. Each column gets the conversion its type needs (plain text,
    numbers and booleans pass through untouched), and each datetime is formatted once: a batch
    shares a handful of instants (``now``, a few due times) across thousands of rows."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self._instant = SqliteWriter().instant
        self._get = itemgetter(*self.columns) if len(self.columns) > 1 else None
        self._converted: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(self.columns):
            declared = table.c[name].type
            column_type = declared.impl if isinstance(declared, TypeDecorator) else declared
            if isinstance(column_type, JSON):
                self._converted.append((index, json.dumps))
            elif isinstance(column_type, Uuid):
                self._converted.append((index, _hex))
            elif isinstance(column_type, DateTime):
                self._converted.append((index, self._instant))
            elif isinstance(column_type, String | Integer | Float | Boolean):
                continue
            else:
                self._converted.append((index, sqlite_value))

    def row(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        values = [row[self.columns[0]]] if self._get is None else list(self._get(row))
        for index, convert in self._converted:
            values[index] = convert(values[index])
        return tuple(values)


class SqliteReader(_OncePerValue[str, datetime]):
    """SQLite's datetime text back to the aware UTC datetimes SQLAlchemy returns for our column
    type."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(_utc_instant)


def _utc_instant(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _hex(value: uuid.UUID | None) -> str | None:
    return None if value is None else value.hex


def insert_rows(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], *, ignore_duplicates: bool = False
) -> int:
    """INSERT many rows that all carry the same keys (``ON CONFLICT DO NOTHING`` if asked); returns
    how many rows were inserted, or -1 where the driver does not tell (psycopg's executemany)."""
    if not rows:
        return 0
    if conn.dialect.name != "sqlite":
        if conn.dialect.name == "postgresql" and ignore_duplicates:
            return conn.execute(postgresql.insert(table).on_conflict_do_nothing(), list(rows)).rowcount
        return conn.execute(table.insert(), list(rows)).rowcount
    columns = list(rows[0].keys())
    convert = _Converter(table, columns)
    return insert_sqlite_values(
        conn, table, columns, [convert.row(row) for row in rows], ignore_duplicates=ignore_duplicates
    )


def insert_sqlite_values(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    values: Sequence[tuple[Any, ...]],
    *,
    ignore_duplicates: bool = False,
) -> int:
    """SQLite only: INSERT tuples already in storage format (``sqlite_value``), in ``columns``
    order (``INSERT OR IGNORE`` if asked); returns how many rows were inserted."""
    if conn.dialect.name != "sqlite":
        raise ValueError(f"insert_sqlite_values writes SQLite storage format, not {conn.dialect.name}")
    if not values:
        return 0
    verb = "INSERT OR IGNORE" if ignore_duplicates else "INSERT"
    sql = f"{verb} INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    params: Any = values
    return conn.exec_driver_sql(sql, params).rowcount


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


def move_state(
    conn: Connection,
    table: Table,
    ids: Sequence[uuid.UUID],
    *,
    from_state: str,
    to_state: str,
    now: datetime,
) -> set[uuid.UUID]:
    """``UPDATE table SET state = to_state, updated_at = now WHERE state = from_state AND id IN ids``;
    returns the ids it moved (the others were not in ``from_state``). On SQLite the ids travel as
    one JSON array (``json_each``), not as a thousand bound parameters."""
    if not ids:
        return set()
    if conn.dialect.name != "sqlite":
        statement = (
            update(table)
            .where(table.c.id.in_(ids), table.c.state == from_state)
            .values(state=to_state, updated_at=now)
            .returning(table.c.id)
        )
        return set(conn.execute(statement).scalars())
    by_hex = {value.hex: value for value in ids}
    # ``+state``: look the rows up by id; the state index would walk every row in that state.
    sql = (
        f"UPDATE {table.name} SET state = ?, updated_at = ? "
        "WHERE id IN (SELECT value FROM json_each(?)) AND +state = ? RETURNING id"
    )
    params = (to_state, sqlite_instant(now), json.dumps(list(by_hex)), from_state)
    return {by_hex[row[0]] for row in conn.exec_driver_sql(sql, params)}
