"""Pixel snapshots of the TUI's screens (committed SVGs; `scripts/test --snapshot-update` after a deliberate change).

The app talks to a stand-in daemon with fixed answers over a real Unix socket, and its clock is fixed,
so the pictures only change when the TUI does.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from fakes.rpc_daemon import FakeDaemon
from nexus_core.rpc.aclient import CallTiming
from nexus_core.testing import cleanup, short_tempdir
from nexus_tui.app import NexusApp
from tui_helpers import until

NOW = datetime(2026, 12, 1, 9, 30, 0, tzinfo=timezone.utc)
GOD = {"mode": "god", "expires_at": (NOW + timedelta(minutes=12)).isoformat(), "god_minutes": 15,
       "available": ["normal", "god"]}
NORMAL = {"mode": "normal", "expires_at": None, "god_minutes": 15, "available": ["normal", "god"]}


@pytest.fixture(autouse=True)
def utc_terminal() -> Iterator[None]:
    """Local times are drawn in the terminal's zone: make it UTC for stable pictures."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def at(minutes: float) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat()


def workflow(name: str, kind: str, status: str = "active", cron: str | None = None, last: str | None = None,
             last_at: float | None = None, next_at: float | None = None, ok: int = 0, failed: int = 0,
             **extra: Any) -> dict[str, Any]:
    finished = ok + failed
    return {"id": hashlib.md5(name.encode()).hexdigest(), "name": name, "kind": kind, "queue": "automation",
            "status": status, "description": extra.pop("description", ""), "cron": cron, "timezone": "Europe/Berlin",
            "run_at": None, "payload": extra.pop("payload", {}), "retries": 2, "attempts": 3, "backoff": 1.0,
            "timeout": 600.0, "requires_approval": False, "created_by": "alice", "created_at": at(-60 * 24 * 3),
            "updated_at": at(-60), "last_run_at": at(last_at) if last_at is not None else None,
            "last_run_status": last, "next_fire_at": at(next_at) if next_at is not None else None,
            "misfire": "skip", "max_catchup": 10, "grace": 60.0, "overlap": "skip", "runs_succeeded": ok,
            "runs_failed": failed, "success_rate": round(ok / finished, 4) if finished else None, **extra}


WORKFLOWS = [
    workflow("daily-report", "noop", cron="0 8 * * 1-5", last="succeeded", last_at=-90, next_at=60 * 22.5,
             ok=41, failed=1, description="Daily report mail to the team"),
    workflow("hubspot-sync", "webhook", cron="*/15 * * * *", last="succeeded", last_at=-0.5, next_at=14.5, ok=960),
    workflow("lead-scoring", "webhook", cron="0 * * * *", last="failed", last_at=-30, next_at=30, ok=180, failed=22),
    workflow("data-cleanup", "command", cron="0 3 * * 0", status="paused", last="succeeded", last_at=-60 * 30, ok=8),
    workflow("deploy-staging", "webhook", last="dead", last_at=-240, ok=3, failed=2),
]
EVENTS = [
    {"id": 9, "at": at(-0.5), "level": "info", "actor": "scheduler", "action": "run.created", "target": "hubspot-sync",
     "message": "hubspot-sync fired (cron)", "data": {}},
    {"id": 8, "at": at(-30), "level": "error", "actor": "worker", "action": "run.dead", "target": "lead-scoring",
     "message": "lead-scoring failed: HTTP 502 from https://scoring.example/api", "data": {}},
    {"id": 7, "at": at(-31), "level": "warning", "actor": "worker", "action": "run.retrying", "target": "lead-scoring",
     "message": "lead-scoring attempt 1 failed: HTTP 502; retrying", "data": {}},
    {"id": 6, "at": at(-60), "level": "info", "actor": "alice", "action": "workflow.paused", "target": "data-cleanup",
     "message": "alice paused data-cleanup", "data": {}},
    {"id": 5, "at": at(-90), "level": "info", "actor": "bob", "action": "workflow.triggered", "target": "daily-report",
     "message": "bob triggered daily-report", "data": {}},
]
HEALTH = {"version": "0.1.0", "pid": 4242, "uptime_s": 93600.0, "socket": "/run/nexus/nexus.sock", "ok": True,
          "database": {"ok": True, "backend": "sqlite", "url": "sqlite:////var/lib/nexus/nexus.db", "latency_ms": 0.4},
          "redis": {"ok": True, "embedded": True, "url": "unix:///var/lib/nexus/redis/redis.sock", "latency_ms": 0.2},
          "queues": {"automation": {"ready": 0, "delayed": 0}, "email": {"ready": 2, "delayed": 0},
                     "sync": {"ready": 0, "delayed": 1}, "report": {"ready": 0, "delayed": 0},
                     "webhook": {"ready": 0, "delayed": 0}},
          "workers": {"processes": 1, "in_daemon": True, "threads": 16, "hosts": ["ops-1"]}}
RATE = {"minutes": 30, "per_minute": [{"at": at(i - 29), "finished": [3, 5, 4, 8, 2, 6][i % 6], "failed": int(i == 0)}
                                      for i in range(30)], "failed_last_hour": 1, "succeeded_last_hour": 140}
RUNS = [{"id": f"{i:032x}", "workflow": "daily-report", "workflow_id": WORKFLOWS[0]["id"],
         "trigger": "cron" if i % 3 else "manual", "triggered_by": "scheduler" if i % 3 else "bob",
         "scheduled_for": None, "queue": "automation", "status": "failed" if i == 4 else "succeeded",
         "attempt": 3 if i == 4 else 1, "max_attempts": 3, "created_at": at(-90 - 1440 * i),
         "started_at": at(-90 - 1440 * i), "finished_at": at(-90 - 1440 * i), "next_attempt_at": None,
         "duration_ms": 120.0 + i, "error": "report service answered 503" if i == 4 else None, "output": "sent 12 mails"}
        for i in range(1, 8)]
NOTIFICATIONS = {"unread": 1, "items": [
    {"id": 2, "at": at(-30), "level": "error", "title": "lead-scoring is dead after all attempts",
     "body": "run 7f3a attempt 3: HTTP 502 from https://scoring.example/api", "workflow_id": None, "run_id": None,
     "read": False},
    {"id": 1, "at": at(-240), "level": "error", "title": "deploy-staging is dead after all attempts",
     "body": "run 19c2 attempt 3: connection refused", "workflow_id": None, "run_id": None, "read": True}]}


def answers(mode: dict[str, Any]) -> dict[str, Any]:
    return {
        "system.handshake": {"protocol": 1, "version": "0.1.0", "daemon_pid": 4242, "version_mismatch": False,
                             "operator": {"name": "alice", "uid": 1000, "role": "admin", "organization": "acme"},
                             "mode": mode},
        "activity.subscribe": {"subscribed": "activity"}, "runs.subscribe": {"subscribed": "runs"},
        "notifications.subscribe": {"subscribed": "notifications"},
        "workflows.list": WORKFLOWS, "activity.recent": EVENTS, "system.health": HEALTH, "runs.rate": RATE,
        "notifications.list": NOTIFICATIONS, "workflows.get": {**WORKFLOWS[0], "recent_runs": RUNS[:3]},
        "runs.list": {"workflow": "daily-report", "runs": RUNS},
        "workflows.next": {"name": "daily-report", "status": "active", "cron": "0 8 * * 1-5",
                           "timezone": "Europe/Berlin", "notice": None,
                           "fires": [{"at": t, "local": t} for t in ("2026-12-02T07:00:00+00:00",
                                                                     "2026-12-03T07:00:00+00:00",
                                                                     "2026-12-04T07:00:00+00:00",
                                                                     "2026-12-07T07:00:00+00:00",
                                                                     "2026-12-08T07:00:00+00:00")]},
        "workflows.stats": {"workflows": {"total": 5, "active": 4, "paused": 1, "error": 0, "completed": 0},
                            "runs": {"total": 1217, "queued": 0, "running": 0, "retrying": 0, "succeeded": 1192,
                                     "failed": 12, "dead": 13},
                            "runs_24h": {"total": 140, "succeeded": 139, "failed": 1}, "success_rate": 0.9795},
    }


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeDaemon]:
    home = short_tempdir()
    mode = GOD if "god" in request.node.name else NORMAL
    with FakeDaemon(home / "nexus.sock", answers(mode)) as daemon:
        daemon.home = home  # type: ignore[attr-defined]
        yield daemon
    cleanup(home)


def app_for(fake: FakeDaemon) -> NexusApp:
    return NexusApp(fake.socket_path, now=lambda: NOW, history_path=fake.home / "history",  # type: ignore[attr-defined]
                    blink=False)


async def dashboard_loaded(pilot: Any) -> None:
    app = pilot.app
    await until(pilot, lambda: app.screen.query("WorkflowTable") and app.screen.query_one("WorkflowTable").rows,
                "the workflows")
    await until(pilot, lambda: app.screen.query_one("ActivityFeed").rows, "the feed")
    await until(pilot, lambda: "runs/min " in str(app.screen.query_one("#rate-line").render()), "the run rate")
    await until(pilot, lambda: app.unread == 1, "the unread count")
    await pilot.pause(0.2)


class TestDashboard:
    def test_dashboard(self, snap_compare: Any, fake: FakeDaemon) -> None:
        assert snap_compare(app_for(fake), terminal_size=(120, 36), run_before=dashboard_loaded)

    def test_dashboard_at_80x24(self, snap_compare: Any, fake: FakeDaemon) -> None:
        assert snap_compare(app_for(fake), terminal_size=(80, 24), run_before=dashboard_loaded)

    def test_dashboard_in_god_mode(self, snap_compare: Any, fake: FakeDaemon) -> None:
        async def run_before(pilot: Any) -> None:
            await dashboard_loaded(pilot)
            await pilot.press("space", "space")
            # Call timings vary from run to run: show fixed ones in the debug pane.
            client = pilot.app.link.client
            client.timings.clear()
            client.timings.extend(CallTiming(m, ms, True, 0.0) for m, ms in
                                  (("workflows.list", 4.2), ("activity.recent", 1.1), ("system.health", 0.9)))
            pilot.app.screen._show_debug()
            await pilot.pause(0.1)

        assert snap_compare(app_for(fake), terminal_size=(140, 40), run_before=run_before)


class TestWorkflowDetail:
    def test_workflow_detail(self, snap_compare: Any, fake: FakeDaemon) -> None:
        async def run_before(pilot: Any) -> None:
            await dashboard_loaded(pilot)
            await pilot.press("enter")
            await until(pilot, lambda: getattr(pilot.app.screen, "runs", None), "the run history")
            screen = pilot.app.screen
            await until(pilot, lambda: screen.query_one("DataTable").row_count == len(RUNS)
                        and "CET" in str(screen.query_one("#next-fires").render()), "the whole workflow screen")
            await pilot.pause(0.3)

        assert snap_compare(app_for(fake), terminal_size=(120, 36), run_before=run_before)


class TestNotifications:
    def test_notifications(self, snap_compare: Any, fake: FakeDaemon) -> None:
        async def run_before(pilot: Any) -> None:
            await dashboard_loaded(pilot)
            await pilot.press("N")
            await until(pilot, lambda: getattr(pilot.app.screen, "items", None), "the notifications")
            await pilot.pause(0.2)

        assert snap_compare(app_for(fake), terminal_size=(120, 36), run_before=run_before)


class TestCommandLine:
    def test_command_line(self, snap_compare: Any, fake: FakeDaemon) -> None:
        async def run_before(pilot: Any) -> None:
            await dashboard_loaded(pilot)
            await pilot.press("colon")
            await until(pilot, lambda: type(pilot.app.screen).__name__ == "CommandScreen", "the command line")
            field = pilot.app.screen.query_one("#command-input")
            field.value = "auto:stats"
            await pilot.press("enter")
            await until(pilot, lambda: len(pilot.app.command_log) >= 2, "the answer")
            field.value = "auto:tri"
            field.cursor_position = 8
            await pilot.pause(0.2)

        assert snap_compare(app_for(fake), terminal_size=(120, 36), run_before=run_before)
