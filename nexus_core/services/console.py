"""The read-only SQL console: one SELECT checked before it reaches the database, run on a read-only
connection, its answer made JSON-safe with secrets masked.

Three layers keep it read-only, so a trick that slips past one meets the next: the statement is
scanned here (one statement, starting with SELECT, WITH, EXPLAIN or VALUES, literals and comments
read the way the database reads them); the driver runs exactly one statement (sqlite3 refuses more,
Postgres gets it as a prepared statement); and the connection itself cannot write (SQLite opened
`mode=ro` with `query_only`, Postgres in a READ ONLY transaction).
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
import urllib.parse
import uuid
from datetime import date, datetime, time as dtime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from nexus_core.errors import InvalidError, UnavailableError
from nexus_core.kinds import get_kind
from nexus_core.redact import is_secret_key, mask, url_secrets

ALLOWED_FIRST = ("SELECT", "WITH", "EXPLAIN", "VALUES")
TIMEOUT_S = 5.0
CELL_CHARS = 4096
ANSWER_BUDGET = 1024 * 1024  # characters of cell text per answer; the rest is cut and marked truncated
# Words after EXPLAIN that start the statement it explains; any but these three is refused.
_STATEMENTS = {"SELECT", "WITH", "VALUES", "INSERT", "UPDATE", "DELETE", "MERGE", "REPLACE", "UPSERT", "CREATE",
               "DROP", "ALTER", "TRUNCATE", "EXECUTE", "DECLARE", "COPY", "REFRESH", "PRAGMA", "ATTACH", "DETACH",
               "VACUUM", "REINDEX", "GRANT", "REVOKE", "CALL", "DO", "SET", "TABLE"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _unterminated() -> InvalidError:
    return InvalidError("the SQL has an unterminated string, quoted name or comment; close it", field="sql")


def _scan(sql: str, dialect: str) -> tuple[list[str], int | None]:
    """The words outside literals and comments, upper-cased, and where the first `;` outside them is."""
    words: list[str] = []
    i, n = 0, len(sql)
    postgres = dialect == "postgresql"
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2
            while depth:  # Postgres nests block comments; SQLite ends them at the first */
                if i >= n:
                    raise _unterminated()
                if sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                elif postgres and sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                else:
                    i += 1
        elif ch == ";":
            return words, i
        elif ch in "'\"" or (ch == "`" and not postgres):
            backslash = postgres and ch == "'" and i > 0 and sql[i - 1] in "eE" and \
                not (i > 1 and (sql[i - 2].isalnum() or sql[i - 2] == "_"))
            i += 1
            while True:
                if i >= n:
                    raise _unterminated()
                if backslash and sql[i] == "\\":
                    i += 2
                elif sql[i] == ch:
                    if sql.startswith(ch * 2, i):
                        i += 2
                    else:
                        i += 1
                        break
                else:
                    i += 1
        elif ch == "[" and not postgres:
            end = sql.find("]", i)
            if end < 0:
                raise _unterminated()
            i = end + 1
        elif ch == "$" and postgres and (tag := _DOLLAR_TAG.match(sql, i)):
            end = sql.find(tag.group(0), tag.end())
            if end < 0:
                raise _unterminated()
            i = end + len(tag.group(0))
        elif (word := _WORD.match(sql, i)) is not None:
            words.append(word.group(0).upper())
            i = word.end()
        else:
            i += 1
    return words, None


def check_sql(sql: str, dialect: str) -> str:
    """The statement to run (without a trailing `;`), or an InvalidError saying what is refused and why."""
    words, semicolon = _scan(sql, dialect)
    if semicolon is not None:
        rest, more = _scan(sql[semicolon + 1:], dialect)
        if rest or more is not None:
            raise InvalidError("db:query runs one statement at a time; remove what follows the `;`", field="sql")
        sql = sql[:semicolon]
    if not words:
        raise InvalidError("give a SELECT statement, e.g. SELECT name, status FROM workflows", field="sql")
    first = words[0]
    if first not in ALLOWED_FIRST:
        raise InvalidError(f"db:query runs read-only SELECT statements only; {first} is refused", field="sql")
    if first == "EXPLAIN":
        inner = next((w for w in words[1:] if w in _STATEMENTS), None)
        if inner is not None and inner not in ("SELECT", "WITH", "VALUES"):
            raise InvalidError(f"db:query runs read-only SELECT statements only; EXPLAIN {inner} is refused",
                               field="sql")
    return sql.strip()


# -- answers: JSON-safe values, secrets masked ----------------------------------------------------

class Scrubber:
    """Replaces known secret values (webhook secrets, secret-looking payload values, the database
    password) wherever they appear in a text, e.g. pulled out with json_extract or echoed in an error."""

    def __init__(self, secrets: set[str]):
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


def _secret_values(value: Any, out: set[str], under_secret: bool = False) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _secret_values(v, out, under_secret or is_secret_key(k))
    elif isinstance(value, list):
        for v in value:
            _secret_values(v, out, under_secret)
    elif under_secret and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        out.add(str(value))
    elif isinstance(value, str):
        out |= url_secrets(value)


def known_secrets(conn: sa.Connection) -> set[str]:
    """Every secret held in workflow payloads, of every organization (the console reads the whole database)."""
    from nexus_core.store.models import workflows_table as W

    found: set[str] = set()
    for kind, payload in conn.execute(sa.select(W.c.kind, W.c.payload)):
        if not isinstance(payload, dict):
            continue
        _secret_values(payload, found)
        try:
            fields = get_kind(kind).secret_fields()
        except InvalidError:
            fields = ()
        for key in fields:
            if payload.get(key) not in (None, ""):
                found.add(str(payload[key]))
    return found


_SECRETS_CACHE: dict[str, tuple[Any, set[str]]] = {}


def secrets_for(conn: sa.Connection, cache_key: str) -> set[str]:
    """known_secrets, read again only when a workflow was added, changed or deleted since the last call."""
    from nexus_core.store.models import workflows_table as W

    stamp = tuple(conn.execute(sa.select(sa.func.count(), sa.func.max(W.c.updated_at))).one())
    cached = _SECRETS_CACHE.get(cache_key)
    if cached is None or cached[0] != stamp:
        cached = (stamp, known_secrets(conn))
        _SECRETS_CACHE[cache_key] = cached
    return cached[1]


def _walk(value: Any, scrub: Scrubber) -> Any:
    """A parsed JSON value with every string (and key) scrubbed of known secrets."""
    if isinstance(value, dict):
        return {scrub(str(k)): _walk(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, scrub) for v in value]
    return scrub(value) if isinstance(value, str) else value


def _json_cell(value: Any, scrub: Scrubber) -> Any:
    """A JSON object or array, secret-looking keys masked and known secrets scrubbed."""
    try:
        return _walk(mask(value), scrub)
    except RecursionError:  # absurdly deep: shown as scrubbed text instead
        return scrub(json.dumps(value, default=str, check_circular=False)[:CELL_CHARS])


def _cell(value: Any, scrub: Scrubber) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # NaN and Infinity are not JSON
    if isinstance(value, str):
        text = value
        if text[:1] in "{[":
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, (dict, list)):
                cleaned = _json_cell(parsed, scrub)
                if cleaned != parsed:  # keep the stored text as it is when nothing was hidden
                    text = cleaned if isinstance(cleaned, str) else json.dumps(cleaned, ensure_ascii=False)
        text = scrub(text)
        return text if len(text) <= CELL_CHARS else text[:CELL_CHARS] + "…[truncated]"
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 2 ** 53 else float(value)
    if isinstance(value, (datetime, date, dtime)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (dict, list)):
        return _json_cell(value, scrub)
    return scrub(str(value))


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str) else 8


# -- running it -----------------------------------------------------------------------------------

def _timed_out() -> InvalidError:
    return InvalidError(f"the query ran longer than {TIMEOUT_S:g} s and was stopped; narrow it down "
                        "(a WHERE clause, or LIMIT)", field="sql")


def _open(url: sa.URL) -> Any:
    """A fresh connection that cannot write, used for one query and closed: no session state outlives it."""
    if url.get_backend_name() == "sqlite":
        uri = f"file:{urllib.parse.quote(url.database or '')}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=TIMEOUT_S, check_same_thread=False)
        conn.execute("PRAGMA query_only=ON")
        return conn
    import psycopg

    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg.connect(conninfo, connect_timeout=int(TIMEOUT_S), autocommit=False)
    conn.read_only = True  # every transaction on it begins READ ONLY
    return conn


def _execute(conn: Any, sql: str) -> Any:
    if isinstance(conn, sqlite3.Connection):
        deadline = time.monotonic() + TIMEOUT_S
        # Called every few thousand VM steps; a non-zero answer aborts the statement ("interrupted").
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 5000)
        return conn.execute(sql)  # sqlite3 refuses a second statement in the text
    cur = conn.cursor()
    cur.execute(f"SET LOCAL statement_timeout = {int(TIMEOUT_S * 1000)}")
    # prepare=True sends it as one prepared statement: the server refuses a second one in the text.
    cur.execute(sql, prepare=True)
    return cur


def _refused(exc: Exception, scrub: Scrubber) -> InvalidError:
    name = type(exc).__name__
    if name == "QueryCanceled" or (isinstance(exc, sqlite3.OperationalError) and "interrupted" in str(exc)):
        return InvalidError(f"the query ran longer than {TIMEOUT_S:g} s and was stopped; narrow it down "
                            "(a WHERE clause, or LIMIT)", field="sql")
    message = getattr(getattr(exc, "diag", None), "message_primary", None) or str(exc)
    return InvalidError(f"the database refused the query: {scrub(message)}", field="sql")


def _driver_error(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg")


def run_query(database_url: str, sql: str, limit: int, scrub: Scrubber) -> dict[str, Any]:
    """Run one checked statement read-only and answer columns, rows (at most `limit`) and timing."""
    url = sa.engine.make_url(database_url)
    dialect = url.get_backend_name()
    if dialect not in ("sqlite", "postgresql"):
        raise UnavailableError(f"db:query supports SQLite and Postgres, not {dialect}")
    statement = check_sql(sql, dialect)
    try:
        conn = _open(url)
    except Exception as exc:
        if _driver_error(exc):
            raise UnavailableError(f"could not open a read-only connection to the database: "
                                   f"{scrub(str(exc))}") from None
        raise
    started = time.perf_counter()
    try:
        cur = _execute(conn, statement)
        columns = [scrub(str(d[0])) for d in cur.description] if cur.description else []
        raw = cur.fetchmany(limit + 1) if cur.description else []
    except RecursionError:  # psycopg parsing a json value nested thousands deep
        raise InvalidError("a value in the answer is nested too deeply to show; select less of it",
                           field="sql") from None
    except Exception as exc:
        if _driver_error(exc):
            raise _refused(exc, scrub) from None
        raise
    finally:
        conn.close()  # Postgres: the READ ONLY transaction is rolled back with it
    elapsed = (time.perf_counter() - started) * 1000
    truncated = len(raw) > limit
    rows, budget = [], ANSWER_BUDGET
    for record in raw[:limit]:
        row = [_cell(v, scrub) for v in record]
        budget -= sum(_size(v) for v in row)
        if budget < 0 and rows:
            truncated = True
            break
        rows.append(row)
    return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": truncated,
            "elapsed_ms": round(elapsed, 2)}
