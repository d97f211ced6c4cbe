"""What the TUI reads from the daemon: success rates, runs per minute, live pushes, re-runs and approvals.

Real daemons on real sockets, on SQLite always and on Postgres too when NEXUS_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import json
import os
import pwd
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from nexus_core.errors import ConflictError, InvalidError, NotFoundError
from nexus_core.testing import DaemonProcess
from pushes import Listener

ME = pwd.getpwuid(os.geteuid()).pw_name
FAILING = {"argv": ["sh", "-c", "echo broken on purpose; exit 3"]}


def run_json(daemon: DaemonProcess, *args: str, code: int = 0) -> Any:
    done = daemon.cli(*args, "--json")
    assert done.returncode == code, f"nexus {' '.join(args)} exited {done.returncode}: {done.stderr}{done.stdout}"
    return json.loads(done.stdout)


def assert_clean_log(daemon: DaemonProcess) -> None:
    """The daemon logged no error and no traceback while the test drove it."""
    log = daemon.log()
    assert "Traceback" not in log and '"level": "error"' not in log, log[-3000:]


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows}


def test_success_rate_per_workflow_and_listing_by_names(daemon: DaemonProcess) -> None:
    c = Listener(daemon.socket)
    c.call("workflows.create", {"name": "steady", "kind": "noop"})
    c.call("workflows.create", {"name": "flaky", "kind": "command", "payload": {"argv": ["true"]}, "retries": 0})
    c.call("workflows.create", {"name": "idle", "kind": "noop"})
    assert c.call("workflows.trigger", {"name": "steady", "wait": True})["status"] == "succeeded"
    assert c.call("workflows.trigger", {"name": "flaky", "wait": True})["status"] == "succeeded"
    c.call("workflows.update", {"name": "flaky", "changes": {"payload": FAILING}})
    assert c.call("workflows.trigger", {"name": "flaky", "wait": True})["status"] == "failed"

    rows = by_name(c.call("workflows.list"))
    assert (rows["steady"]["runs_succeeded"], rows["steady"]["runs_failed"], rows["steady"]["success_rate"]) == (1, 0, 1.0)
    assert (rows["flaky"]["runs_succeeded"], rows["flaky"]["runs_failed"], rows["flaky"]["success_rate"]) == (1, 1, 0.5)
    assert (rows["idle"]["runs_succeeded"], rows["idle"]["runs_failed"], rows["idle"]["success_rate"]) == (0, 0, None)
    assert c.call("workflows.get", {"name": "flaky"})["success_rate"] == 0.5

    # Only the rows asked for (the TUI refreshes the ones a push named); unknown names are left out.
    assert [wf["name"] for wf in c.call("workflows.list", {"names": ["idle", "steady", "gone"]})] == ["idle", "steady"]
    assert c.call("workflows.list", {"names": []}) == []
    assert [wf["name"] for wf in c.call("workflows.list", {"names": ["idle", "steady"], "status": "active"})] == \
        ["idle", "steady"]
    err = c.error("workflows.list", {"names": ["x"] * 10_001})
    assert isinstance(err, InvalidError) and err.field == "names"
    # A dead run (every attempt failed) counts as a failure too.
    c.call("workflows.update", {"name": "steady", "changes": {"kind": "command", "payload": FAILING, "retries": 1,
                                                               "backoff": 0.1}})
    assert c.call("workflows.trigger", {"name": "steady", "wait": True})["status"] == "dead"
    assert by_name(c.call("workflows.list"))["steady"]["success_rate"] == 0.5
    c.close()


def test_runs_rate_counts_finished_and_failed_runs_per_minute(daemon: DaemonProcess) -> None:
    c = Listener(daemon.socket)
    c.call("workflows.create", {"name": "ok", "kind": "noop"})
    c.call("workflows.create", {"name": "bad", "kind": "command", "payload": FAILING, "retries": 0})
    empty = c.call("runs.rate", {"minutes": 3})
    assert empty["failed_last_hour"] == 0 and empty["succeeded_last_hour"] == 0
    for _ in range(3):
        c.call("workflows.trigger", {"name": "ok", "wait": True})
    for _ in range(2):
        c.call("workflows.trigger", {"name": "bad", "wait": True})

    rate = c.call("runs.rate", {"minutes": 5})
    assert rate["minutes"] == 5 and len(rate["per_minute"]) == 5
    starts = [datetime.fromisoformat(m["at"]) for m in rate["per_minute"]]
    assert all(t.tzinfo is not None and t.second == 0 and t.microsecond == 0 for t in starts)
    assert [(b - a).total_seconds() for a, b in zip(starts, starts[1:])] == [60.0] * 4
    now = datetime.now(timezone.utc)
    assert 0 <= (now - starts[-1]).total_seconds() < 61  # the last entry is the current minute
    assert sum(m["finished"] for m in rate["per_minute"]) == 5
    assert sum(m["failed"] for m in rate["per_minute"]) == 2
    assert rate["succeeded_last_hour"] == 3 and rate["failed_last_hour"] == 2

    default = c.call("runs.rate")
    assert default["minutes"] == 60 and len(default["per_minute"]) == 60
    assert len(c.call("runs.rate", {"minutes": 1440})["per_minute"]) == 1440
    for bad in (0, 1441, "many"):
        err = c.error("runs.rate", {"minutes": bad})
        assert isinstance(err, InvalidError) and err.field == "minutes"
    c.close()


def test_subscriber_gets_run_changes_and_notifications_after_a_failing_run(daemon: DaemonProcess) -> None:
    watcher = Listener(daemon.socket)
    assert watcher.call("runs.subscribe") == {"subscribed": "runs", "notification": "runs.changed"}
    assert watcher.call("notifications.subscribe") == {"subscribed": "notifications",
                                                        "notification": "notifications.new"}
    quiet = Listener(daemon.socket)  # connected, not subscribed: gets nothing unasked
    done = daemon.cli("auto:create", "breaks", "--kind", "command", "--payload", json.dumps(FAILING),
                      "--retries", "1", "--backoff", "0.1")
    assert done.returncode == 0, done.stderr
    run = run_json(daemon, "auto:trigger", "breaks", "--wait", code=1)
    assert run["status"] == "dead"

    note = watcher.wait_for("notifications.new")
    assert note["run_id"] == run["id"] and note["read"] is False and note["level"] == "error"
    assert "breaks" in note["title"] and "dead" in note["title"] and note["id"] > 0 and note["at"]
    assert note["workflow_id"] == run["workflow_id"]
    assert set(note) == {"id", "at", "level", "title", "body", "workflow_id", "run_id", "read"}

    def totals() -> dict[str, int]:
        out = {"created": 0, "started": 0, "dead": 0, "failed": 0, "retrying": 0}
        for p in watcher.of("runs.changed"):
            for key in ("created", "started", "retrying"):
                out[key] += p[key]
            out["dead"] += p["finished"]["dead"]
            out["failed"] += p["finished"]["failed"]
        return out

    watcher.wait_for("runs.changed", lambda p: p["finished"]["dead"] == 1)
    assert totals() == {"created": 1, "started": 2, "dead": 1, "failed": 0, "retrying": 1}
    assert all(p["workflows"] == ["breaks"] for p in watcher.of("runs.changed"))
    assert quiet.call("system.ping") == "pong" and quiet.pushes == []

    # Many runs at once are coalesced: far fewer pushes than changes, never two within 250 ms.
    daemon.cli_json("auto:create", "many", "--kind", "noop")
    watcher.pushes.clear()
    for _ in range(40):
        watcher.call("workflows.trigger", {"name": "many"})
    watcher.wait_for("runs.changed", lambda p: sum(q["finished"]["succeeded"] for q in watcher.of("runs.changed"))
                     >= 40)
    pushes = [(t, p) for t, name, p in watcher.pushes if name == "runs.changed"]
    assert sum(p["created"] for _, p in pushes) == 40 and sum(p["started"] for _, p in pushes) == 40
    # At most one push per 250 ms (plus one at either end for where the window falls).
    assert len(pushes) < 40 and len(pushes) <= (pushes[-1][0] - pushes[0][0]) / 0.25 + 2, pushes
    # Only when something changed: every push counts something, and an idle daemon pushes nothing.
    watcher.drain(0.6)
    seen = watcher.of("runs.changed")
    assert all(p["created"] or p["started"] or p["retrying"] or any(p["finished"].values()) for p in seen)
    watcher.drain(0.6)
    assert watcher.of("runs.changed") == seen
    assert_clean_log(daemon)
    watcher.close()
    quiet.close()


def test_rerun_of_a_dead_run_and_refusal_for_a_succeeded_one(daemon: DaemonProcess) -> None:
    daemon.env["COLUMNS"] = "200"
    run_json(daemon, "auto:create", "fragile", "--kind", "command", "--payload", json.dumps(FAILING),
             "--retries", "1", "--backoff", "0.1")
    dead = run_json(daemon, "auto:trigger", "fragile", "--wait", code=1)
    assert dead["status"] == "dead"

    again = run_json(daemon, "auto:rerun", dead["id"][:24])
    assert again["rerun_of"] == dead["id"] and again["id"] != dead["id"]
    assert again["trigger"] == "manual" and again["triggered_by"] == ME and again["workflow"] == "fragile"
    assert again["status"] in ("queued", "running", "retrying", "dead")
    event = next(e for e in run_json(daemon, "activity:recent") if e["action"] == "run.rerun")
    assert event["data"] == {"run_id": again["id"], "rerun_of": dead["id"]} and event["actor"] == ME
    assert len(run_json(daemon, "auto:logs", "fragile")["runs"]) == 2
    human = daemon.cli("auto:rerun", dead["id"])
    assert human.returncode == 0 and "re-ran fragile" in human.stdout and dead["id"] in human.stdout

    # Only failed or dead runs: a succeeded one is refused, saying what to do instead.
    run_json(daemon, "auto:create", "fine", "--kind", "noop")
    ok = run_json(daemon, "auto:trigger", "fine", "--wait")
    refused = daemon.cli("auto:rerun", ok["id"])
    assert refused.returncode == 2
    assert f"run {ok['id']} is succeeded; only failed or dead runs can be re-run" in refused.stderr
    assert "trigger the workflow instead" in refused.stderr
    assert len(run_json(daemon, "auto:logs", "fine")["runs"]) == 1
    assert daemon.cli("auto:rerun", "0123456789abcdef").returncode == 4

    # The workflow is gone: nothing to re-run.
    run_json(daemon, "auto:delete", "fragile")
    c = Listener(daemon.socket)
    err = c.error("runs.rerun", {"id": dead["id"]})
    assert isinstance(err, NotFoundError) and "deleted" in err.message
    err = c.error("runs.rerun", {"id": "not-hex!"})
    assert isinstance(err, InvalidError) and err.field == "id"
    c.close()
    assert_clean_log(daemon)


def test_approval_is_needed_unless_confirmed(daemon: DaemonProcess) -> None:
    run_json(daemon, "auto:create", "payouts", "--kind", "noop", "--requires-approval")
    refused = daemon.cli("auto:trigger", "payouts")
    assert refused.returncode == 2
    assert "payouts requires approval: confirm it (`auto:trigger payouts --yes`)" in refused.stderr
    assert run_json(daemon, "auto:logs", "payouts")["runs"] == []
    c = Listener(daemon.socket)
    err = c.error("workflows.trigger", {"name": "payouts"})
    assert isinstance(err, ConflictError) and err.data.get("reason") == "approval_required"

    run = run_json(daemon, "auto:trigger", "payouts", "--yes", "--wait")
    assert run["status"] == "succeeded" and run["triggered_by"] == ME
    event = next(e for e in run_json(daemon, "activity:recent") if e["action"] == "workflow.triggered")
    assert event["data"] == {"run_id": run["id"], "approval": "confirmed"} and "approval" in event["message"]

    # A failed run of it is re-run only with the same confirmation.
    daemon.cli_json("auto:edit", "payouts", "--kind", "command", "--payload", json.dumps(FAILING), "--retries", "0")
    failed = run_json(daemon, "auto:trigger", "payouts", "--yes", "--wait", code=1)
    refused = daemon.cli("auto:rerun", failed["id"])
    assert refused.returncode == 2 and f"auto:rerun {failed['id']} --yes" in refused.stderr
    assert run_json(daemon, "auto:rerun", failed["id"], "--yes")["rerun_of"] == failed["id"]
    # Workflows without the flag need no confirmation, and accept one.
    run_json(daemon, "auto:create", "plain", "--kind", "noop")
    assert run_json(daemon, "auto:trigger", "plain")["status"] in ("queued", "running", "succeeded")
    assert run_json(daemon, "auto:trigger", "plain", "--yes")["workflow"] == "plain"
    c.close()
    assert_clean_log(daemon)


def test_migration_0003_backfills_the_counters(database_url: str | None, home: Any) -> None:
    from alembic import command

    from nexus_core.store import migrate
    from nexus_core.store.db import Store

    store = Store(database_url or f"sqlite:///{home / 'old.db'}")
    try:
        with store.engine.begin() as conn:
            command.upgrade(migrate._config(str(store.engine.url), conn), "0002")
        now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
        with store.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO organizations (id, name, created_at) VALUES ('o1', 'default', :t)"),
                         {"t": now})
            for wf in ("alpha", "beta", "gamma"):
                conn.execute(sa.text(
                    "INSERT INTO workflows (id, organization_id, name, description, kind, queue, payload, status, "
                    "timezone, created_by, created_at, updated_at) VALUES (:id, 'o1', :id, '', 'noop', 'automation', "
                    "'{}', 'active', 'UTC', 'test', :t, :t)"), {"id": wf, "t": now})
            statuses = {"alpha": ["succeeded", "succeeded", "failed", "dead", "queued", "skipped"],
                        "beta": ["succeeded"], "gamma": []}
            for wf, runs in statuses.items():
                for i, status in enumerate(runs):
                    conn.execute(sa.text(
                        "INSERT INTO runs (id, organization_id, workflow_id, workflow_name, \"trigger\", "
                        "triggered_by, queue, status, attempt, max_attempts, created_at) VALUES "
                        "(:id, 'o1', :wf, :wf, 'manual', 'test', 'automation', :s, 1, 3, :t)"),
                        {"id": f"{wf}{i}", "wf": wf, "s": status, "t": now})
        assert migrate.upgrade(store.engine)
        with store.engine.connect() as conn:
            got = {r.name: (r.runs_succeeded, r.runs_failed) for r in conn.execute(
                sa.text("SELECT name, runs_succeeded, runs_failed FROM workflows"))}
            indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("runs")}
        assert got == {"alpha": (2, 2), "beta": (1, 0), "gamma": (0, 0)}
        assert "ix_runs_org_finished" in indexes
    finally:
        store.close()
