"""Hot-path statements compiled once per dialect and run on the DBAPI cursor, skipping SQLAlchemy's per-call work.

A run passes through a handful of statements thousands of times a second.  Executing a Core statement
through a SQLAlchemy Connection costs ~150 µs of Python on a slow core (cache lookup, event dispatch,
parameter processing, result set-up), five times what SQLite itself needs.  A `Prepared` statement is
compiled by SQLAlchemy once for each dialect (so quoting, paramstyle and casts stay SQLAlchemy's) and
then executed with the column types' own bind and result processors on the connection's cursor,
inside whatever transaction the Connection has open.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable

import sqlalchemy as sa

from nexus_core.store.types import UTCDateTime


_last: tuple[Any, str] = (None, "")


def _sqlite_utc(value: datetime) -> str:
    """UTCDateTime's bind processing on SQLite (UTC wall time, SQLAlchemy's text format) in one step."""
    global _last
    last = _last
    if last[0] is value:  # a write binds the same `now` several times (run row, attempt row, counters)
        return last[1]
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} given; Nexus stores only timezone-aware UTC")
    utc = value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)
    text = utc.isoformat(" ", "microseconds")[:26]  # without the "+00:00"
    _last = (value, text)
    return text


sqlite_utc = _sqlite_utc


def _bind_processor(type_: Any, dialect: sa.Dialect) -> Any:
    if dialect.name == "sqlite" and isinstance(type_, UTCDateTime):
        return _sqlite_utc  # the same text as the two processors it replaces, a few times faster
    return type_._cached_bind_processor(dialect)


def _result_processor(type_: Any, dialect: sa.Dialect) -> Any:
    try:
        return type_._cached_result_processor(dialect, None)
    except TypeError:  # psycopg's numeric types want the column's type code; the driver already converts them
        return None


class _Compiled:
    __slots__ = ("sql", "positional", "names", "defaults", "binds", "columns")

    def __init__(self, stmt: Any, dialect: sa.Dialect):
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        self.positional = bool(compiled.positional)
        names = list(compiled.positiontup) if compiled.positional else list(compiled.construct_params(
            {n: None for n, b in compiled.binds.items() if b.required}, _check=False))
        self.names = names
        # Values written into the statement itself (`.values(status="running")`, `== "queued"`).
        self.defaults = {n: compiled.binds[n].effective_value for n in names if not compiled.binds[n].required}
        self.binds = [(n, _bind_processor(compiled.binds[n].type, dialect)) for n in names]
        cols = list(getattr(stmt, "selected_columns", None) or getattr(stmt, "exported_columns", None) or [])
        self.columns = [(c.key, _result_processor(c.type, dialect)) for c in cols]

    def params(self, values: dict[str, Any]) -> Any:
        merged = {**self.defaults, **values} if self.defaults else values
        if self.positional:
            return [merged[n] if proc is None or merged[n] is None else proc(merged[n]) for n, proc in self.binds]
        return {n: merged[n] if proc is None or merged[n] is None else proc(merged[n]) for n, proc in self.binds}

    def row(self, raw: Any) -> dict[str, Any]:
        return {key: proc(v) if proc and v is not None else v for (key, proc), v in zip(self.columns, raw)}


_ALL: list["Prepared"] = []


def prepare_all(conn: sa.Connection) -> int:
    """Compile every Prepared statement for this connection's dialect now, so the first runs after a start
    do not pay for it (a few ms each on a slow core, enough to make a per-second schedule overlap)."""
    for prepared in _ALL:
        prepared._compiled(conn)
    return len(_ALL)


class Prepared:
    """One Core statement with named bind parameters, ready to run on any dialect's raw cursor."""

    def __init__(self, stmt: Any):
        self.stmt = stmt
        self._by_dialect: dict[str, _Compiled] = {}
        _ALL.append(self)

    def _compiled(self, conn: sa.Connection) -> _Compiled:
        name = conn.dialect.name
        compiled = self._by_dialect.get(name)
        if compiled is None:
            compiled = self._by_dialect[name] = _Compiled(self.stmt, conn.dialect)
        return compiled

    @staticmethod
    def _cursor(conn: sa.Connection) -> Any:
        return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def rowcount(self, conn: sa.Connection, values: dict[str, Any]) -> int:
        """Execute once; the number of rows it changed."""
        c = self._compiled(conn)
        cur = self._cursor(conn)
        try:
            cur.execute(c.sql, c.params(values))
            return int(cur.rowcount)
        finally:
            cur.close()

    def rows(self, conn: sa.Connection, values: dict[str, Any]) -> list[dict[str, Any]]:
        """Execute once; every row it returned (SELECT or RETURNING), as dicts with processed values."""
        c = self._compiled(conn)
        cur = self._cursor(conn)
        try:
            cur.execute(c.sql, c.params(values))
            return [c.row(raw) for raw in cur.fetchall()]
        finally:
            cur.close()

    def first(self, conn: sa.Connection, values: dict[str, Any]) -> dict[str, Any] | None:
        found = self.rows(conn, values)
        return found[0] if found else None

    def rows_each(self, conn: sa.Connection, values: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Execute once per parameter set; the rows each execution returned.  On Postgres in one round
        trip (psycopg's pipelined executemany), elsewhere one execute each."""
        c = self._compiled(conn)
        if not values:
            return []
        cur = self._cursor(conn)
        try:
            if conn.dialect.name == "sqlite":
                out = []
                for v in values:
                    cur.execute(c.sql, c.params(v))
                    out.append([c.row(raw) for raw in cur.fetchall()])
                return out
            cur.executemany(c.sql, [c.params(v) for v in values], returning=True)
            out = [[c.row(raw) for raw in cur.fetchall()]]
            while cur.nextset():
                out.append([c.row(raw) for raw in cur.fetchall()])
            return out
        finally:
            cur.close()

    def many(self, conn: sa.Connection, values: Iterable[dict[str, Any]]) -> None:
        """Execute once per parameter set in one driver call (executemany)."""
        c = self._compiled(conn)
        params = [c.params(v) for v in values]
        if not params:
            return
        cur = self._cursor(conn)
        try:
            cur.executemany(c.sql, params)
        finally:
            cur.close()

    def insert_id(self, conn: sa.Connection, values: dict[str, Any]) -> int:
        """Execute an INSERT … RETURNING id (Postgres) or a plain INSERT (SQLite's lastrowid); the new id."""
        c = self._compiled(conn)
        cur = self._cursor(conn)
        try:
            cur.execute(c.sql, c.params(values))
            if c.columns:
                return int(cur.fetchone()[0])
            return int(cur.lastrowid)
        finally:
            cur.close()


def insert(table: sa.Table, keys: Iterable[str], *, returning_id: bool = False) -> "InsertPrepared":
    """A prepared INSERT of exactly these columns (so server defaults apply to the others)."""
    return InsertPrepared(table, tuple(keys), returning_id)


class InsertPrepared(Prepared):
    """An INSERT whose RETURNING id is only rendered where lastrowid is not available (Postgres)."""

    def __init__(self, table: sa.Table, keys: tuple[str, ...], returning_id: bool):
        super().__init__(sa.insert(table).values({k: sa.bindparam(k, type_=table.c[k].type) for k in keys}))
        self.table, self.returning_id = table, returning_id
        self._returning = sa.insert(table).values(
            {k: sa.bindparam(k, type_=table.c[k].type) for k in keys}).returning(table.c.id) if returning_id else None

    def _compiled(self, conn: sa.Connection) -> _Compiled:
        name = conn.dialect.name
        compiled = self._by_dialect.get(name)
        if compiled is None:
            stmt = self._returning if self._returning is not None and name != "sqlite" else self.stmt
            compiled = self._by_dialect[name] = _Compiled(stmt, conn.dialect)
        return compiled


class PreparedIn(Prepared):
    """A Prepared statement with one expanding list, `column.in_(sa.bindparam(name, expanding=True))`.

    SQLAlchemy renders such a list anew on every execution; here the statement is compiled once and
    its SQL is kept for each list length seen, so a batch's rows are read or changed by one statement
    instead of one statement each."""

    def __init__(self, stmt: Any, list_name: str):
        super().__init__(stmt)
        self.list_name = list_name
        self._token = f"__[POSTCOMPILE_{list_name}]"
        self._sql: dict[tuple[str, int], str] = {}

    def _render(self, conn: sa.Connection, items: list[Any], values: dict[str, Any]) -> tuple[str, Any]:
        c = self._compiled(conn)
        n = len(items)
        key = (conn.dialect.name, n)
        sql = self._sql.get(key)
        style = conn.dialect.paramstyle
        if sql is None:
            if style == "qmark":
                marks = ", ".join(["?"] * n)
            elif style == "pyformat":
                marks = ", ".join(f"%({self.list_name}_{i})s" for i in range(n))
            else:  # pragma: no cover - the two drivers Nexus ships
                raise NotImplementedError(f"paramstyle {style}")
            sql = self._sql[key] = c.sql.replace(self._token, marks)
        merged = {**c.defaults, **values} if c.defaults else values
        if c.positional:
            params: Any = []
            for name, proc in c.binds:
                if name == self.list_name:
                    params.extend(v if proc is None or v is None else proc(v) for v in items)
                else:
                    v = merged[name]
                    params.append(v if proc is None or v is None else proc(v))
        else:
            params = {}
            for name, proc in c.binds:
                if name == self.list_name:
                    for i, v in enumerate(items):
                        params[f"{name}_{i}"] = v if proc is None or v is None else proc(v)
                else:
                    v = merged[name]
                    params[name] = v if proc is None or v is None else proc(v)
        return sql, params

    def rows_in(self, conn: sa.Connection, items: list[Any], values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Execute once for the whole list; every row returned (none for an empty list, without a statement)."""
        if not items:
            return []
        sql, params = self._render(conn, items, values or {})
        c = self._compiled(conn)
        cur = self._cursor(conn)
        try:
            cur.execute(sql, params)
            return [c.row(raw) for raw in cur.fetchall()]
        finally:
            cur.close()

    def rowcount_in(self, conn: sa.Connection, items: list[Any], values: dict[str, Any] | None = None) -> int:
        """Execute once for the whole list; the number of rows changed (0 for an empty list, without a statement)."""
        if not items:
            return 0
        sql, params = self._render(conn, items, values or {})
        cur = self._cursor(conn)
        try:
            cur.execute(sql, params)
            return int(cur.rowcount)
        finally:
            cur.close()
