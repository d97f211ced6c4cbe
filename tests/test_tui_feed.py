"""The activity feed under pushes: newest first, filterable, and it keeps its place when scrolled back."""

from __future__ import annotations

from typing import Any

from fakes.rpc_daemon import FakeDaemon
from nexus_core.testing import cleanup, short_tempdir
from nexus_tui.app import NexusApp
from tui_helpers import until


def event(i: int, level: str = "info") -> dict[str, Any]:
    return {"id": i, "at": f"2026-12-01T09:{i // 60 % 60:02d}:{i % 60:02d}+00:00", "level": level,
            "actor": "worker", "action": "run.created", "target": f"wf-{i}", "message": f"event number {i}",
            "data": {}}


ANSWERS: dict[str, Any] = {
    "system.handshake": {"protocol": 1, "version": "0.1.0", "daemon_pid": 1, "version_mismatch": False,
                         "operator": {"name": "alice", "uid": 1000, "role": "admin", "organization": "acme"},
                         "mode": {"mode": "normal", "expires_at": None}},
    "activity.subscribe": {}, "runs.subscribe": {}, "notifications.subscribe": {},
    "workflows.list": [], "activity.recent": [event(i) for i in range(100, 0, -1)],
    "system.health": {"ok": True}, "runs.rate": None, "notifications.list": {"unread": 0, "items": []},
}


async def test_feed_takes_pushes_newest_first_and_keeps_its_place_when_scrolled_back() -> None:
    home = short_tempdir()
    try:
        with FakeDaemon(home / "nexus.sock", ANSWERS) as daemon:
            app = NexusApp(daemon.socket_path, history_path=home / "history", blink=False)
            async with app.run_test(size=(120, 36)) as pilot:
                feed = await until(pilot, lambda: app.screen.query("ActivityFeed").first(), "the feed")
                await until(pilot, lambda: len(feed.rows) == 100, "the recent events")
                assert feed.rows[0]["id"] == 100
                daemon.push("activity.event", event(101))
                await until(pilot, lambda: feed.rows[0]["id"] == 101, "a pushed event on top")

                feed.focus()
                for _ in range(30):
                    await pilot.press("down")
                top = round(feed.scroll_y)
                looking_at = feed.current["id"]
                assert top > 0
                for i in range(102, 112):
                    daemon.push("activity.event", event(i))
                await until(pilot, lambda: feed.events[0]["id"] == 111, "ten more pushed events")
                await pilot.pause(0.1)
                assert feed.current["id"] == looking_at  # the cursor stays on the same event
                assert round(feed.scroll_y) == top + 10  # and the same lines stay in view

                await pilot.press("home")
                daemon.push("activity.event", event(112, "error"))
                await until(pilot, lambda: feed.rows[0]["id"] == 112, "pinned to the newest again")
                assert round(feed.scroll_y) == 0

                await pilot.press("slash")
                await pilot.press(*"number 11")
                assert {e["id"] for e in feed.rows} == {11, *range(110, 113)}
                await pilot.press("escape")
                assert len(feed.rows) == 112
    finally:
        cleanup(home)
