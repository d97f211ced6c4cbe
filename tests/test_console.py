"""The read-only SQL console (`db:query`): rows come back, writes never happen, secrets never show.

Real daemons on real sockets, on SQLite always and on Postgres too when NEXUS_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from nexus_core.errors import ForbiddenError, InvalidError
from nexus_core.services.console import check_sql
from nexus_core.testing import DaemonProcess
from pushes import Listener

SECRET = "whsec-console-5e1f0a77b2"
API_KEY = "ak-live-0c9d8e7f6a5b"


@pytest.fixture
def god(daemon: DaemonProcess) -> Listener:
    """A connection of the daemon's admin in god mode, with a few workflows and runs to read."""
    c = Listener(daemon.socket)
    c.call("workflows.create", {"name": "alpha", "kind": "noop"})
    c.call("workflows.create", {"name": "beta", "kind": "noop", "description": "[bold red]not markup[/]"})
    c.call("workflows.create", {"name": "hook", "kind": "webhook", "payload": {
        "url": "http://127.0.0.1:9/in", "secret": SECRET, "headers": {"X-Api-Key": API_KEY}}})
    for name in ("alpha", "alpha", "beta"):
        c.call("workflows.trigger", {"name": name, "wait": True})
    c.call("mode.set", {"mode": "god", "minutes": 10})
    yield c
    c.close()


def backend(c: Listener) -> str:
    return c.call("system.health")["database"]["backend"]


def run_count(c: Listener) -> int:
    return c.call("db.query", {"sql": "SELECT count(*) FROM runs"})["rows"][0][0]


def test_query_answers_columns_and_rows(daemon: DaemonProcess, god: Listener) -> None:
    out = god.call("db.query", {"sql": "SELECT name, kind, runs_succeeded FROM workflows ORDER BY name;"})
    assert out["columns"] == ["name", "kind", "runs_succeeded"]
    assert out["rows"] == [["alpha", "noop", 2], ["beta", "noop", 1], ["hook", "webhook", 0]]
    assert out["row_count"] == 3 and out["truncated"] is False
    assert isinstance(out["elapsed_ms"], float) and out["elapsed_ms"] >= 0

    limited = god.call("db.query", {"sql": "SELECT id FROM runs ORDER BY id", "limit": 2})
    assert limited["row_count"] == 2 and len(limited["rows"]) == 2 and limited["truncated"] is True
    grouped = god.call("db.query", {"sql": "WITH s AS (SELECT status FROM runs) "
                                           "SELECT status, count(*) AS n FROM s GROUP BY status"})
    assert grouped["rows"] == [["succeeded", 3]]
    assert god.call("db.query", {"sql": "VALUES (1, 'a'), (2, 'b')"})["rows"] == [[1, "a"], [2, "b"]]
    explained = god.call("db.query", {"sql": "EXPLAIN SELECT * FROM runs WHERE status = 'queued'"})
    assert explained["rows"] and explained["columns"]
    # Comments and quoted semicolons are read as the database reads them.
    assert god.call("db.query", {"sql": "-- runs\nSELECT ';' AS semi /* ; DELETE */ ; -- done"})["rows"] == [[";"]]
    # Times and other values come back JSON-safe.
    times = god.call("db.query", {"sql": "SELECT created_at, finished_at, duration_ms FROM runs LIMIT 1"})
    assert all(isinstance(v, (str, float)) for v in times["rows"][0])

    # The CLI renders a table; cells are data, never Rich markup.
    daemon.env["COLUMNS"] = "200"
    human = daemon.cli("db:query", "SELECT name, description FROM workflows ORDER BY name", "--limit", "2")
    assert human.returncode == 0, human.stderr
    assert "alpha" in human.stdout and "[bold red]not markup[/]" in human.stdout and "hook" not in human.stdout
    assert "2 row(s)" in human.stdout and "--limit" in human.stdout
    as_json = json.loads(daemon.cli("db:query", "SELECT 1 AS one", "--json").stdout)
    assert as_json["columns"] == ["one"] and as_json["rows"] == [[1]]


WRITES = [
    ("DELETE FROM runs", "DELETE"),
    ("delete from runs where 1 = 1", "DELETE"),
    ("UPDATE runs SET status = 'dead'", "UPDATE"),
    ("INSERT INTO organizations (id, name, created_at) VALUES ('x', 'x', '2026-01-01')", "INSERT"),
    ("DROP TABLE runs", "DROP"),
    ("PRAGMA query_only = OFF", "PRAGMA"),
    ("PRAGMA journal_mode = DELETE", "PRAGMA"),
    ("ATTACH DATABASE '/tmp/other.db' AS other", "ATTACH"),
    ("/* SELECT */ DELETE FROM runs", "DELETE"),
    ("  -- SELECT\n  truncate runs", "TRUNCATE"),
    ("EXPLAIN ANALYZE DELETE FROM runs", "EXPLAIN DELETE"),
    ("BEGIN", "BEGIN"),
    ("COMMIT", "COMMIT"),
    ("SET default_transaction_read_only = off", "SET"),
    ("COPY runs TO '/tmp/runs.csv'", "COPY"),
]
MULTI = [
    "SELECT 1; DELETE FROM runs",
    "SELECT 1;DELETE FROM runs;",
    "SELECT 1; COMMIT; DELETE FROM runs",
    "SELECT ';'; DELETE FROM runs",
    "SELECT 1; -- comment\nDELETE FROM runs",
    "SELECT 1 /* */; /* */ UPDATE runs SET status = 'x'",
    "SELECT 1;;",
]


def test_writes_and_statement_tricks_are_refused(daemon: DaemonProcess, god: Listener) -> None:
    before = run_count(god)
    for sql, keyword in WRITES:
        err = god.error("db.query", {"sql": sql})
        assert isinstance(err, InvalidError) and err.field == "sql", sql
        assert err.message == f"db:query runs read-only SELECT statements only; {keyword} is refused", sql
    for sql in MULTI:
        err = god.error("db.query", {"sql": sql})
        assert isinstance(err, InvalidError), sql
        assert "one statement at a time" in err.message, (sql, err.message)
    done = daemon.cli("db:query", "DELETE FROM runs")
    assert done.returncode == 2 and "DELETE is refused" in done.stderr
    # Still every run, and the daemon still serves.
    assert run_count(god) == before == 3
    assert god.call("db.query", {"sql": "SELECT count(*) FROM workflows"})["rows"] == [[3]]

    # What the scanner lets through meets a connection that cannot write.
    if backend(god) == "postgresql":
        err = god.error("db.query", {"sql": "WITH gone AS (DELETE FROM runs RETURNING id) SELECT count(*) FROM gone"})
        assert isinstance(err, InvalidError) and "read-only transaction" in err.message
        err = god.error("db.query", {"sql": "SELECT id FROM runs FOR UPDATE"})
        assert isinstance(err, InvalidError) and "read-only transaction" in err.message
        err = god.error("db.query", {"sql": "SELECT * INTO stolen FROM runs"})
        assert isinstance(err, InvalidError) and "read-only transaction" in err.message
        err = god.error("db.query", {"sql": "SELECT nextval('activity_events_id_seq')"})
        assert isinstance(err, InvalidError) and "read-only transaction" in err.message
        # Dollar quotes and E'' strings are read as Postgres reads them.
        assert god.call("db.query", {"sql": "SELECT $$;$$ AS a, E'\\';' AS b"})["rows"] == [[";", "';"]]
        # Here the `;` is inside the E'' string: one harmless SELECT, as Postgres sees it.
        assert god.call("db.query", {"sql": "SELECT E'\\' ; DELETE FROM runs; --'"})["rows"] == \
            [["' ; DELETE FROM runs; --"]]
    else:
        err = god.error("db.query", {"sql": "WITH gone AS (DELETE FROM runs RETURNING id) SELECT count(*) FROM gone"})
        assert isinstance(err, InvalidError) and "the database refused the query" in err.message
        err = god.error("db.query", {"sql": "SELECT 1 /* /* */ ; DELETE FROM runs -- */"})
        assert isinstance(err, InvalidError) and "one statement" in err.message
    assert run_count(god) == 3
    assert god.call("system.ping") == "pong"


def test_long_queries_are_stopped(god: Listener) -> None:
    started = time.monotonic()
    if backend(god) == "postgresql":
        sql = "SELECT pg_sleep(30)"
    else:
        sql = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
    err = god.error("db.query", {"sql": sql})
    assert isinstance(err, InvalidError) and "longer than 5 s" in err.message
    assert time.monotonic() - started < 15
    assert god.call("db.query", {"sql": "SELECT 1"})["rows"] == [[1]]


def test_secrets_never_appear_in_answers(daemon: DaemonProcess, god: Listener) -> None:
    def no_secrets(value: Any) -> None:
        text = json.dumps(value)
        assert SECRET not in text and API_KEY not in text, text

    everything = god.call("db.query", {"sql": "SELECT * FROM workflows WHERE name = 'hook'"})
    no_secrets(everything)
    payload = everything["rows"][0][everything["columns"].index("payload")]
    decoded = json.loads(payload) if isinstance(payload, str) else payload
    assert decoded["secret"] == "***" and decoded["headers"]["X-Api-Key"] == "***"
    assert decoded["url"] == "http://127.0.0.1:9/in"  # only secrets are masked
    if backend(god) == "postgresql":
        pulled = ["SELECT payload::json->>'secret' AS s FROM workflows WHERE name = 'hook'",
                  "SELECT payload::json->'headers' AS h FROM workflows WHERE name = 'hook'",
                  "SELECT 'x' || (payload::json->>'secret') || 'y' FROM workflows WHERE name = 'hook'"]
    else:
        pulled = ["SELECT json_extract(payload, '$.secret') AS s FROM workflows WHERE name = 'hook'",
                  "SELECT json_extract(payload, '$.headers') AS h FROM workflows WHERE name = 'hook'",
                  "SELECT 'x' || json_extract(payload, '$.secret') || 'y' FROM workflows WHERE name = 'hook'"]
    for sql in pulled:
        no_secrets(god.call("db.query", {"sql": sql}))
    if backend(god) == "postgresql":  # the database's own error would quote the value
        err = god.error("db.query", {"sql": "SELECT (payload::json->>'secret')::int FROM workflows "
                                            "WHERE name = 'hook'"})
        assert "invalid input syntax" in err.message and SECRET not in err.message and "***" in err.message
    human = daemon.cli("db:query", "SELECT payload FROM workflows")
    assert human.returncode == 0 and SECRET not in human.stdout and API_KEY not in human.stdout
    for where in (json.dumps(god.call("activity.recent", {"limit": 500})), daemon.log()):
        assert SECRET not in where and API_KEY not in where


def test_console_access_and_bad_input(daemon: DaemonProcess, god: Listener) -> None:
    for params, field in (({"sql": ""}, "sql"), ({"sql": "   "}, "sql"), ({"sql": "SELECT 1", "limit": 0}, "limit"),
                          ({"sql": "SELECT 1", "limit": 1001}, "limit"), ({"sql": "S" * 10_001}, "sql"),
                          ({"sql": 5}, "sql"), ({}, "sql"), ({"sql": "SELECT 'open"}, "sql")):
        err = god.error("db.query", params)
        assert isinstance(err, InvalidError) and err.field == field, (params, err.message)
    err = god.error("db.query", {"sql": "SELECT * FROM no_such_table"})
    assert isinstance(err, InvalidError) and "no_such_table" in err.message and "Traceback" not in err.message
    # Values nested thousands deep come back as text (or are refused), never as an internal error.
    if backend(god) == "postgresql":
        deep = "SELECT repeat('[', 3000) || repeat(']', 3000) AS deep"
        err = god.error("db.query", {"sql": "SELECT (repeat('[', 3000) || repeat(']', 3000))::json"})
        assert isinstance(err, InvalidError) and "nested too deeply" in err.message
    else:
        deep = "SELECT replace(printf('%.*c', 3000, 'x'), 'x', '[') || replace(printf('%.*c', 3000, 'x'), 'x', ']') " \
               "AS deep"
    [[text]] = god.call("db.query", {"sql": deep})["rows"]
    assert text.startswith("[[[") and text.endswith("…[truncated]")
    # Every call is in the activity log, refused ones too, with the SQL cut at 200 characters.
    long_sql = "SELECT 1 AS " + "x" * 400
    god.call("db.query", {"sql": long_sql})
    logged = [e for e in god.call("activity.recent", {"limit": 100}) if e["action"] == "god.call"]
    assert logged[0]["data"]["sql"] == long_sql[:200]
    assert any(e["data"].get("sql") == "SELECT * FROM no_such_table" and e["data"]["error"] == "invalid"
               for e in logged)
    # Outside god mode it is refused before anything runs.
    god.call("mode.set", {"mode": "normal"})
    err = god.error("db.query", {"sql": "SELECT 1"})
    assert isinstance(err, ForbiddenError) and "mode:god" in err.message
    assert god.call("system.ping") == "pong"
    assert "Traceback" not in daemon.log()


@pytest.mark.parametrize("sql, dialect, refusal", [
    ("select 1", "sqlite", None), ("(SELECT 1) UNION SELECT 2", "postgresql", None),
    ("with recursive t(n) as (values (1)) select * from t", "sqlite", None),
    ("EXPLAIN QUERY PLAN SELECT 1", "sqlite", None), ("EXPLAIN (FORMAT JSON) SELECT 1", "postgresql", None),
    ("SELECT \"delete\" FROM t", "postgresql", None), ("SELECT [;] FROM t", "sqlite", None),
    ("REPLACE INTO t VALUES (1)", "sqlite", "REPLACE is refused"), ("VACUUM", "sqlite", "VACUUM is refused"),
    ("CALL p()", "postgresql", "CALL is refused"), ("DO $$ BEGIN END $$", "postgresql", "DO is refused"),
    ("\"select\" 1", "postgresql", "give a SELECT statement"), ("SELECT $tag$ ; $tag$", "postgresql", None),
    ("SELECT $$ ; DELETE", "postgresql", "unterminated"), ("SELECT 1 /* ; DELETE", "sqlite", "unterminated"),
])
def test_the_statement_check(sql: str, dialect: str, refusal: str | None) -> None:
    if refusal is None:
        assert check_sql(sql, dialect) == sql
        return
    with pytest.raises(InvalidError) as caught:
        check_sql(sql, dialect)
    assert refusal in caught.value.message
