"""Power modes: god mode for admins until it expires, god-only methods, the god-mode audit, bulk actions.

Real daemons on real sockets (SQLite, and Postgres when configured). The test with a second unix user
needs root, like tests/test_permissions.py.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from nexus_core.config import load_settings
from nexus_core.errors import InvalidError
from nexus_core.testing import DaemonProcess
from pushes import Listener

ME = pwd.getpwuid(os.geteuid()).pw_name
SECRET = "whsec-do-not-show-7f3a9c"


def run_json(daemon: DaemonProcess, *args: str, code: int = 0) -> Any:
    done = daemon.cli(*args, "--json")
    assert done.returncode == code, f"nexus {' '.join(args)} exited {done.returncode}: {done.stderr}{done.stdout}"
    return json.loads(done.stdout)


def events(daemon: DaemonProcess, action: str) -> list[dict[str, Any]]:
    return [e for e in run_json(daemon, "activity:recent", "--limit", "200") if e["action"] == action]


def test_god_mode_for_an_admin_until_it_expires(daemon: DaemonProcess) -> None:
    normal = {"mode": "normal", "expires_at": None, "god_minutes": 15, "available": ["normal", "god"]}
    watcher = Listener(daemon.socket)  # another connection of the same operator, as the TUI would be
    assert watcher.hello["mode"] == normal
    assert run_json(daemon, "mode:status") == normal
    assert "normal mode" in daemon.cli("mode:status").stdout

    # God-only methods are refused in normal mode, saying how to get there; nothing is done.
    daemon.cli_json("auto:create", "job", "--kind", "noop")
    for args, method in ((("db:query", "SELECT 1"), "db.query"), (("auto:bulk", "pause", "job"), "workflows.bulk")):
        done = daemon.cli(*args)
        assert done.returncode == 5, done.stderr
        assert f"{method} needs god mode: `mode:god` (admins only)" in done.stderr
    assert run_json(daemon, "auto:show", "job")["status"] == "active"

    before = datetime.now(timezone.utc)
    god = run_json(daemon, "mode:god", "--minutes", "0.02")  # 1.2 s
    assert god["mode"] == "god" and god["available"] == ["normal", "god"] and god["god_minutes"] == 15
    expires = datetime.fromisoformat(god["expires_at"])
    assert 1.0 <= (expires - before).total_seconds() <= 2.5
    assert watcher.wait_for("mode.changed", lambda p: p["mode"] == "god") == god
    # Held by the daemon for the operator: a later command (a new connection) is in god mode too.
    assert run_json(daemon, "mode:status")["mode"] == "god"
    assert run_json(daemon, "db:query", "SELECT 1 AS one")["rows"] == [[1]]
    assert "god mode until" in daemon.cli("mode:status").stdout

    # It ends by itself: pushed, logged, and god-only methods are refused again.
    assert watcher.wait_for("mode.changed", lambda p: p["mode"] == "normal", timeout=10) == normal
    assert run_json(daemon, "mode:status") == normal
    assert daemon.cli("db:query", "SELECT 1").returncode == 5
    [entered] = events(daemon, "mode.god")
    assert entered["level"] == "warning" and entered["actor"] == ME
    assert entered["message"] == f"{ME} entered god mode for 0.02 min"
    [expired] = events(daemon, "mode.expired")
    assert expired["actor"] == ME and "expired" in expired["message"]

    # Leaving early is logged too, and a new grant replaces the old one (no early expiry from the first).
    run_json(daemon, "mode:god", "--minutes", "0.02")
    renewed = run_json(daemon, "mode:god", "--minutes", "5")
    time.sleep(1.6)
    assert run_json(daemon, "mode:status") == renewed
    assert len(events(daemon, "mode.expired")) == 1
    assert run_json(daemon, "mode:normal") == normal
    assert [e["message"] for e in events(daemon, "mode.normal")] == [f"{ME} left god mode"]
    assert watcher.wait_for("mode.changed", lambda p: p["mode"] == "normal" and len(watcher.of("mode.changed")) >= 5)
    watcher.close()


def test_ultra_is_not_available_and_bad_minutes_are_refused(daemon: DaemonProcess) -> None:
    done = daemon.cli("mode:ultra")
    assert done.returncode == 2
    assert "ultra mode (autonomous AI) is not available yet: it arrives with the AI integration" in done.stderr
    c = Listener(daemon.socket)
    err = c.error("mode.set", {"mode": "ultra"})
    assert isinstance(err, InvalidError) and err.data["reason"] == "not_available"
    assert c.call("mode.get")["mode"] == "normal"
    for minutes in (0, -1, 240.5, 1e9):
        err = c.error("mode.set", {"mode": "god", "minutes": minutes})
        assert isinstance(err, InvalidError) and err.field == "minutes" and "240" in err.message
    err = c.error("mode.set", {"mode": "godlike"})
    assert isinstance(err, InvalidError) and err.field == "mode"
    done = daemon.cli("mode:god", "--minutes", "500")
    assert done.returncode == 2 and "at most 240" in done.stderr
    assert c.call("mode.get")["mode"] == "normal"
    # Asking for ultra while in god mode changes nothing.
    c.call("mode.set", {"mode": "god", "minutes": 1})
    assert isinstance(c.error("mode.set", {"mode": "ultra"}), InvalidError)
    assert c.call("mode.get")["mode"] == "god"
    assert c.call("system.ping") == "pong"
    c.close()


def test_calls_in_god_mode_are_logged_without_payloads(daemon: DaemonProcess) -> None:
    daemon.cli_json("auto:create", "report", "--kind", "noop", "--requires-approval")
    daemon.cli_json("auto:list")
    run_json(daemon, "mode:god", "--minutes", "5")
    payload = json.dumps({"url": "http://127.0.0.1:9/hook", "secret": SECRET})
    run_json(daemon, "auto:create", "hook", "--kind", "webhook", "--payload", payload)
    # God mode is the approval: no --yes needed.
    run = run_json(daemon, "auto:trigger", "report", "--wait")
    assert run["status"] == "succeeded"
    run_json(daemon, "auto:show", "report")  # reads are not logged
    run_json(daemon, "auto:list")
    long_sql = "SELECT " + ", ".join(f"{i} AS c{i}" for i in range(60))
    assert len(long_sql) > 300
    run_json(daemon, "db:query", long_sql)
    assert daemon.cli("auto:trigger", "ghost").returncode == 4
    run_json(daemon, "mode:normal")
    run_json(daemon, "auto:trigger", "report", "--yes")  # back in normal mode: not a god-mode call

    logged = list(reversed(events(daemon, "god.call")))
    assert [e["data"]["method"] for e in logged] == ["workflows.create", "workflows.trigger", "db.query",
                                                      "workflows.trigger"]
    create, trigger, query, ghost = logged
    assert create["actor"] == ME and create["target"] == "hook"
    assert create["message"] == f"{ME} (god mode) workflows.create hook"
    assert create["data"] == {"method": "workflows.create", "mode": "god", "workflows": ["hook"]}
    assert trigger["message"] == f"{ME} (god mode) workflows.trigger report"
    assert query["data"]["sql"] == long_sql[:200] and query["message"].endswith(long_sql[:200])
    assert ghost["data"]["error"] == "not_found" and ghost["level"] == "warning"
    triggered = [e for e in events(daemon, "workflow.triggered")]
    assert [e["data"].get("approval") for e in triggered] == ["confirmed", "god mode"]

    everything = json.dumps(run_json(daemon, "activity:recent", "--limit", "200"))
    assert SECRET not in everything and SECRET not in daemon.log()
    assert "Traceback" not in daemon.log()


def test_bulk_actions_in_god_mode(daemon: DaemonProcess) -> None:
    daemon.env["COLUMNS"] = "200"
    for name in ("alpha", "beta", "gamma"):
        daemon.cli_json("auto:create", name, "--kind", "noop", *(["--requires-approval"] if name == "gamma" else []))
    run_json(daemon, "mode:god", "--minutes", "5")

    paused = run_json(daemon, "auto:bulk", "pause", "alpha, beta,ghost", code=1)
    assert paused["action"] == "pause" and sorted(paused["done"]) == ["alpha", "beta"]
    assert list(paused["failed"]) == ["ghost"] and "no workflow named 'ghost'" in paused["failed"]["ghost"]
    status = {wf["name"]: wf["status"] for wf in run_json(daemon, "auto:list")}
    assert status == {"alpha": "paused", "beta": "paused", "gamma": "active"}
    human = daemon.cli("auto:bulk", "resume", "alpha,beta")
    assert human.returncode == 0 and "resume: 2 done" in human.stdout
    assert {wf["status"] for wf in run_json(daemon, "auto:list")} == {"active"}

    triggered = run_json(daemon, "auto:bulk", "trigger", "alpha,beta,gamma,alpha")
    assert sorted(triggered["done"]) == ["alpha", "beta", "gamma"] and triggered["failed"] == {}
    for name in ("alpha", "beta", "gamma"):
        assert len(run_json(daemon, "auto:logs", name)["runs"]) == 1

    deleted = run_json(daemon, "auto:bulk", "delete", "beta,ghost", code=1)
    assert deleted["done"] == ["beta"] and list(deleted["failed"]) == ["ghost"]
    assert sorted(wf["name"] for wf in run_json(daemon, "auto:list")) == ["alpha", "gamma"]

    c = Listener(daemon.socket)
    for params, field in (({"action": "explode", "names": ["alpha"]}, "action"),
                          ({"action": "pause", "names": []}, "names"),
                          ({"action": "pause", "names": ["x"] * 1001}, "names"),
                          ({"action": "pause", "names": [""]}, "names.0")):
        err = c.error("workflows.bulk", params)
        assert isinstance(err, InvalidError) and err.field == field, (params, err.message)
    assert daemon.cli("auto:bulk", "pause", " , ").returncode == 2
    bulk_log = [e for e in events(daemon, "god.call") if e["data"]["method"] == "workflows.bulk"]
    assert bulk_log[-1]["data"]["workflows"] == ["alpha", "beta", "ghost"]
    assert c.call("system.ping") == "pong"
    c.close()


def test_god_minutes_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "nexus.toml"
    config.write_text("[modes]\ngod_minutes = 30\n")
    monkeypatch.delenv("NEXUS_GOD_MINUTES", raising=False)
    assert load_settings(config).god_minutes == 30
    monkeypatch.setenv("NEXUS_GOD_MINUTES", "2.5")
    assert load_settings(config).god_minutes == 2.5
    for bad in ("0", "241", "soon"):
        monkeypatch.setenv("NEXUS_GOD_MINUTES", bad)
        with pytest.raises(InvalidError, match="god_minutes"):
            load_settings(config)
    monkeypatch.delenv("NEXUS_GOD_MINUTES")
    assert "modes" not in load_settings(config).extra
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert load_settings(empty).god_minutes == 15


def test_configured_default_length_of_god_mode(make_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = make_daemon(config="[modes]\ngod_minutes = 0.025\n").start()
    c = Listener(daemon.socket)
    assert c.hello["mode"]["god_minutes"] == 0.025
    god = c.call("mode.set", {"mode": "god"})
    left = (datetime.fromisoformat(god["expires_at"]) - datetime.now(timezone.utc)).total_seconds()
    assert 0.5 < left <= 1.5
    c.wait_for("mode.changed", lambda p: p["mode"] == "normal", timeout=10)
    c.close()


def _socket_group() -> str:
    try:
        return grp.getgrnam("nogroup").gr_name
    except KeyError:
        return grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: runs `nexus` as another unix user")
def test_god_mode_is_refused_to_a_non_admin(make_daemon, home) -> None:  # type: ignore[no-untyped-def]
    from test_permissions import run_as

    os.chmod(home, 0o755)  # the socket is in the data folder: the other user must reach it
    group = _socket_group()
    daemon = make_daemon(config=f'[daemon]\nsocket_group = "{group}"\n\n'
                                '[[operators]]\nuser = "nobody"\nrole = "operator"\n').start()
    daemon.cli_json("auto:create", "shared", "--kind", "noop")

    refused = run_as(daemon, "nobody", "mode:god", extra_groups=(group,))
    assert refused.returncode == 5, refused.stderr + refused.stdout
    assert "god mode is for admins; nobody is operator" in refused.stderr
    status = run_as(daemon, "nobody", "mode:status", "--json", extra_groups=(group,))
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {"mode": "normal", "expires_at": None, "god_minutes": 15,
                                         "available": ["normal"]}

    # The admin's god mode is the admin's alone: the operator still may not use god-only methods.
    run_json(daemon, "mode:god", "--minutes", "5")
    bulk = run_as(daemon, "nobody", "auto:bulk", "pause", "shared", extra_groups=(group,))
    assert bulk.returncode == 5 and "workflows.bulk needs god mode" in bulk.stderr
    query = run_as(daemon, "nobody", "db:query", "SELECT 1", extra_groups=(group,))
    assert query.returncode == 5 and "admin role" in query.stderr
    assert run_json(daemon, "auto:show", "shared")["status"] == "active"
    assert not [e for e in events(daemon, "god.call") if e["actor"] == "nobody"]


def test_bad_requests_leave_god_mode_as_it_was(daemon: DaemonProcess) -> None:
    c = Listener(daemon.socket)
    c.call("mode.set", {"mode": "god", "minutes": 1})
    for params in ({"mode": 3}, {"mode": "god", "minutes": "long"}, {"mode": "god", "extra": 1}, None):
        err = c.error("mode.set", params)
        assert isinstance(err, InvalidError)
    assert c.call("mode.get")["mode"] == "god"
    err = c.error("workflows.bulk", {"action": "pause"})
    assert isinstance(err, InvalidError) and err.field == "names"
    assert c.call("system.ping") == "pong"
    c.close()
