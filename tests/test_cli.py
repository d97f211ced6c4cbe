"""The one-shot `nexus` CLI against a real daemon, as a user drives it: exit codes, output, what gets written.

Runs on SQLite always and on Postgres too when NEXUS_TEST_DATABASE_URL is set (the `daemon` fixture).
"""

from __future__ import annotations

import json
import os
import pwd
import socket
from pathlib import Path
from typing import Any

import pytest

from nexus_core.testing import DaemonProcess

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_WORKFLOWS = ROOT / "config" / "workflows.example.toml"
ME = pwd.getpwuid(os.geteuid()).pw_name


def run_json(daemon: DaemonProcess, *args: str, code: int = 0) -> Any:
    """`nexus ARGS --json`: exits with `code` and prints valid JSON on stdout."""
    done = daemon.cli(*args, "--json")
    assert done.returncode == code, f"nexus {' '.join(args)} exited {done.returncode}: {done.stderr}{done.stdout}"
    return json.loads(done.stdout)


def names(daemon: DaemonProcess) -> list[str]:
    return [wf["name"] for wf in run_json(daemon, "auto:list")]


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def wide_terminal(daemon: DaemonProcess) -> None:
    """Tables are rendered for an 80-column pipe unless told otherwise; keep ids and messages on one line."""
    daemon.env["COLUMNS"] = "200"


def test_workflow_from_creation_to_deletion(daemon: DaemonProcess) -> None:
    # Nothing yet: the human list says so and points at auto:create.
    empty = daemon.cli("auto:list")
    assert empty.returncode == 0 and "auto:create" in empty.stdout
    assert run_json(daemon, "auto:list") == []

    created = run_json(daemon, "auto:create", "nightly", "--kind", "noop", "--description", "first version",
                       "--cron", "0 3 * * *", "--tz", "Europe/Berlin", "--requires-approval")
    assert created["name"] == "nightly" and created["kind"] == "noop" and created["status"] == "active"
    assert created["requires_approval"] is True
    assert created["created_by"] == ME and created["next_fire_at"]

    listed = run_json(daemon, "auto:list")
    assert [(wf["name"], wf["cron"], wf["timezone"]) for wf in listed] == [("nightly", "0 3 * * *", "Europe/Berlin")]
    human = daemon.cli("auto:list")
    assert human.returncode == 0 and "nightly" in human.stdout and "noop" in human.stdout

    shown = run_json(daemon, "auto:show", "nightly")
    assert shown["description"] == "first version" and shown["recent_runs"] == []
    assert "first version" in daemon.cli("auto:show", "nightly").stdout

    # Triggered and waited for: the answer is the finished run with its attempt.
    # It requires approval: triggered with --yes (without, it is refused: tests/test_tui_api.py).
    run = run_json(daemon, "auto:trigger", "nightly", "--yes", "--wait")
    assert run["status"] == "succeeded" and run["workflow"] == "nightly" and run["triggered_by"] == ME
    assert [a["status"] for a in run["attempts"]] == ["succeeded"]
    human = daemon.cli("auto:trigger", "nightly", "--wait", "--yes")
    assert human.returncode == 0 and "succeeded" in human.stdout

    logs = run_json(daemon, "auto:logs", "nightly")
    assert logs["workflow"] == "nightly"
    assert len(logs["runs"]) == 2 and {r["status"] for r in logs["runs"]} == {"succeeded"}
    assert run["id"] in [r["id"] for r in logs["runs"]]
    assert all(r["attempt"] == 1 and r["max_attempts"] == 3 for r in logs["runs"])
    human = daemon.cli("auto:logs", "nightly")
    assert human.returncode == 0 and run["id"][-12:] in human.stdout and "1/3" in human.stdout
    assert len(run_json(daemon, "auto:logs", "nightly", "--limit", "1")["runs"]) == 1
    one = run_json(daemon, "auto:run", run["id"])
    assert one["id"] == run["id"] and len(one["attempts"]) == 1 and one["attempts"][0]["status"] == "succeeded"
    assert run_json(daemon, "auto:run", run["id"][:12])["id"] == run["id"]  # a unique prefix is enough

    # Pause and resume change the status, and the activity log says who did it.
    human = daemon.cli("auto:pause", "nightly")
    assert human.returncode == 0 and "nightly is paused" in human.stdout
    paused = run_json(daemon, "auto:pause", "nightly")  # pausing again changes nothing
    assert paused["status"] == "paused" and paused["next_fire_at"] is None
    assert run_json(daemon, "auto:show", "nightly")["status"] == "paused"
    assert run_json(daemon, "auto:list", "--status", "paused")[0]["name"] == "nightly"
    assert run_json(daemon, "auto:list", "--status", "active") == []
    resumed = run_json(daemon, "auto:resume", "nightly")
    assert resumed["status"] == "active" and resumed["next_fire_at"]
    assert run_json(daemon, "auto:show", "nightly")["status"] == "active"
    events = run_json(daemon, "activity:recent")
    actions = {e["action"]: e for e in events}
    for action in ("workflow.created", "workflow.triggered", "workflow.paused", "workflow.resumed"):
        assert action in actions, f"{action} missing from activity:recent: {[e['action'] for e in events]}"
        assert actions[action]["actor"] == ME and actions[action]["target"] == "nightly"
    assert events[0]["action"] == "workflow.resumed"  # newest first
    assert [e["action"] for e in events].count("workflow.paused") == 1  # the second pause was no change
    human = daemon.cli("activity:recent")
    assert human.returncode == 0 and f"{ME} paused nightly" in human.stdout

    # Editing changes only the fields given.
    edited = run_json(daemon, "auto:edit", "nightly", "--description", "second version", "--retries", "5")
    assert edited["description"] == "second version" and edited["attempts"] == 6
    shown = run_json(daemon, "auto:show", "nightly")
    assert (shown["description"], shown["retries"], shown["cron"]) == ("second version", 5, "0 3 * * *")
    assert shown["requires_approval"] is True, "editing other fields must not clear requires_approval"
    assert run_json(daemon, "activity:recent", "--limit", "1")[0]["action"] == "workflow.updated"

    # Deleting removes the workflow but keeps its runs as history.
    deleted = run_json(daemon, "auto:delete", "nightly")
    assert deleted == {"name": "nightly", "deleted": True, "cancelled_runs": 0}
    assert names(daemon) == []
    assert daemon.cli("auto:show", "nightly").returncode == 4
    old = run_json(daemon, "auto:run", run["id"])
    assert old["status"] == "succeeded" and old["workflow"] == "nightly"
    assert "nightly" in daemon.cli("auto:run", run["id"]).stdout

    # A webhook nobody answers: 2 attempts, then dead; a notification reaches the operator.
    port = closed_port()
    run_json(daemon, "auto:create", "hook", "--kind", "webhook", "--retries", "1", "--backoff", "0.1",
             "--timeout", "5", "--payload", json.dumps({"url": f"http://127.0.0.1:{port}/hook"}))
    done = daemon.cli("auto:trigger", "hook", "--wait", "--wait-timeout", "60", "--json")
    assert done.returncode == 1, done.stderr + done.stdout
    dead = json.loads(done.stdout)
    assert dead["status"] == "dead" and dead["attempt"] == 2 and dead["max_attempts"] == 2
    assert [a["status"] for a in dead["attempts"]] == ["failed", "failed"]
    assert "could not reach" in dead["error"]
    human = daemon.cli("auto:run", dead["id"])
    assert human.returncode == 0 and "dead" in human.stdout

    notes = run_json(daemon, "notifications:list")
    assert notes["unread"] == 1
    [note] = notes["items"]
    assert "hook" in note["title"] and "dead" in note["title"] and note["run_id"] == dead["id"] and not note["read"]
    assert run_json(daemon, "notifications:list", "--unread")["items"][0]["id"] == note["id"]
    assert run_json(daemon, "notifications:read", "--all") == {"marked_read": 1}
    notes = run_json(daemon, "notifications:list")
    assert notes["unread"] == 0 and notes["items"][0]["read"] is True
    assert run_json(daemon, "notifications:list", "--unread")["items"] == []
    assert "marked 0 as read" in daemon.cli("notifications:read", "--all").stdout

    # Stats count executions (runs): 2 succeeded (of a deleted workflow, still history) + 1 dead = 3.
    stats = run_json(daemon, "auto:stats")
    assert stats["runs"]["total"] == 3
    assert (stats["runs"]["succeeded"], stats["runs"]["dead"], stats["runs"]["failed"]) == (2, 1, 0)
    assert stats["runs_24h"]["total"] == 3
    assert stats["workflows"]["total"] == 1
    assert stats["success_rate"] == pytest.approx(2 / 3, abs=1e-3)
    human = daemon.cli("auto:stats")
    assert human.returncode == 0 and "3 executions" in human.stdout


INVALID_CREATES = [
    (["--kind", "noop", "--cron", "61 * * * *"], "cron", "cron"),
    (["--kind", "noop", "--cron", "* * *"], "cron", "3 fields"),
    (["--kind", "noop", "--cron", "30 2 31 2 *"], "cron", "never fires"),
    (["--kind", "noop", "--cron", "0 8 * * *", "--tz", "Europe/Berlni"], "timezone", "time zone"),
    (["--kind", "no-such-kind"], "kind", "kind"),
    (["--kind", "noop", "--payload", "{bad"], "payload", "payload"),
    (["--kind", "noop", "--description", "x" * 501], "description", "description"),
    (["--kind", "noop", "--at", "2020-01-01T09:00"], "run_at", "past"),
    (["--kind", "noop", "--cron", "0 8 * * *", "--at", "2099-01-01T09:00"], "at", "--cron or --at"),
    (["--kind", "noop", "--retries", "99"], "retries", "retries"),
]


def test_bad_input_is_refused_and_nothing_is_written(daemon: DaemonProcess, tmp_path: Path) -> None:
    run_json(daemon, "auto:create", "existing", "--kind", "noop")
    before = run_json(daemon, "auto:list")

    def refused(args: list[str], field: str, words: str) -> None:
        done = daemon.cli(*args)
        assert done.returncode == 2, f"{args}: exit {done.returncode}: {done.stderr}{done.stdout}"
        assert words.lower() in done.stderr.lower(), f"{args}: {done.stderr!r} does not mention {words!r}"
        as_json = daemon.cli(*args, "--json")
        assert as_json.returncode == 2
        error = json.loads(as_json.stdout)["error"]
        assert error["field"] == field and error["kind"] in ("invalid", "conflict"), (args, error)
        assert run_json(daemon, "auto:list") == before, f"{args} changed the workflows"

    for args, field, words in INVALID_CREATES:
        refused(["auto:create", "fresh", *args], field, words)
    refused(["auto:create", "existing", "--kind", "noop"], "name", "exists already")
    refused(["auto:create", "n" * 65, "--kind", "noop"], "name", "1-64")
    refused(["auto:edit", "existing", "--cron", "61 * * * *"], "cron", "cron")
    refused(["auto:edit", "existing", "--tz", "Europe/Berlni"], "timezone", "time zone")
    refused(["auto:edit", "existing", "--payload", "[1, 2]"], "payload", "JSON object")
    refused(["auto:edit", "existing"], "changes", "nothing to change")

    # Usage errors caught by the command line itself (no daemon call) also exit 2.
    usage = daemon.cli("auto:create", "fresh")
    assert usage.returncode == 2 and "--kind" in usage.stderr
    usage = daemon.cli("auto:list", "--status", "sleeping")
    assert usage.returncode == 2 and "--status" in usage.stderr

    # Not found: exit 4, with a message naming what is missing.
    for args in (["auto:show", "ghost"], ["auto:trigger", "ghost"], ["auto:pause", "ghost"],
                 ["auto:edit", "ghost", "--description", "x"], ["auto:delete", "ghost"], ["auto:logs", "ghost"],
                 ["auto:run", "deadbeef"]):
        done = daemon.cli(*args)
        assert done.returncode == 4, f"{args}: exit {done.returncode}: {done.stderr}"
        assert ("ghost" in done.stderr) or ("deadbeef" in done.stderr), done.stderr
        assert json.loads(daemon.cli(*args, "--json").stdout)["error"]["kind"] == "not_found"
    assert run_json(daemon, "auto:list") == before

    # auto:apply: the example file creates its 4 workflows (this daemon's own user is admin, so `command` is fine).
    applied = run_json(daemon, "auto:apply", str(EXAMPLE_WORKFLOWS))
    example = ["daily-report", "hubspot-sync", "lead-scoring", "data-cleanup"]
    assert sorted(applied["created"]) == sorted(example) and applied["updated"] == []
    assert sorted(names(daemon)) == sorted(["existing", *example])
    cleanup = run_json(daemon, "auto:show", "data-cleanup")
    assert cleanup["kind"] == "command" and cleanup["timezone"] == "Europe/Berlin" and cleanup["cron"] == "30 3 * * *"
    report = run_json(daemon, "auto:show", "daily-report")
    assert (report["kind"], report["retries"], report["timeout"]) == ("webhook", 2, 120.0)

    # Applying the same file again changes nothing and says so.
    again = run_json(daemon, "auto:apply", str(EXAMPLE_WORKFLOWS))
    assert sorted(again["unchanged"]) == sorted(example) and again["created"] == again["updated"] == []
    human = daemon.cli("auto:apply", str(EXAMPLE_WORKFLOWS))
    assert human.returncode == 0 and "unchanged" in human.stdout
    after_apply = run_json(daemon, "auto:list")

    # One bad entry among good ones: nothing is created or updated (all or nothing), exit 2 naming it.
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[workflow]]\nname = "daily-report"\nkind = "webhook"\ndescription = "changed"\n'
        '[workflow.payload]\nurl = "http://127.0.0.1:5678/webhook/daily-report"\n\n'
        '[[workflow]]\nname = "brand-new"\nkind = "noop"\ncron = "*/5 * * * *"\n\n'
        '[[workflow]]\nname = "broken"\nkind = "noop"\ncron = "61 * * * *"\n')
    done = daemon.cli("auto:apply", str(bad))
    assert done.returncode == 2, done.stderr + done.stdout
    assert "broken" in done.stderr and "cron" in done.stderr
    assert run_json(daemon, "auto:list") == after_apply
    assert run_json(daemon, "auto:show", "daily-report")["description"] == "Daily KPI report, sent every morning"

    # A file that is not there, or not TOML: exit 2 before the daemon is asked.
    assert daemon.cli("auto:apply", str(tmp_path / "missing.toml")).returncode == 2
    (tmp_path / "junk.toml").write_text("[[workflow]\nname = ")
    done = daemon.cli("auto:apply", str(tmp_path / "junk.toml"))
    assert done.returncode == 2 and "not valid TOML" in done.stderr
    assert run_json(daemon, "auto:list") == after_apply

    # Other read commands used above also answer valid JSON.
    health = run_json(daemon, "sys:health")
    assert health["ok"] is True and health["database"]["ok"] and health["redis"]["ok"]
    assert "counters" in run_json(daemon, "sys:metrics")


def test_run_history_reads_on_an_80_column_terminal(daemon: DaemonProcess) -> None:
    # Port 9 (discard) refuses: the run fails at once with the reason in its error.
    made = daemon.cli("auto:create", "hook", "--kind", "webhook", "--retries", "0",
                      "--payload", '{"url": "http://127.0.0.1:9/in"}')
    assert made.returncode == 0, made.stderr
    assert daemon.cli("auto:trigger", "hook", "--wait").returncode == 1
    daemon.env.update(COLUMNS="80", TZ="Asia/Tokyo")  # times shown in the terminal's zone, named (JST: no DST)
    shown = daemon.cli("auto:logs", "hook")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["RUN", "TRIGGER", "STATUS", "ATTEMPT", "STARTED", "(JST)", "DURATION"]
    assert "failed" in lines[1] and "1/1" in lines[1] and all(len(line) <= 80 for line in lines)
    # The error under its run, whole words on whole lines, not a sliver of a column.
    error = " ".join(line.strip() for line in lines[2:])
    assert error.startswith("↳ could not reach http://127.0.0.1:9/in") and "check payload.url" in error
    assert "LAST RUN (JST)" in daemon.cli("auto:list").stdout
