"""The TUI under Pilot against a real daemon on a real socket: what an operator does and sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nexus_core.testing import DaemonProcess
from nexus_tui.app import NexusApp
from nexus_tui.history import CommandHistory
from tui_helpers import burst, command_output, plain, type_command, until

SIZE = (120, 36)


@pytest.fixture
def tui_daemon(make_daemon) -> DaemonProcess:  # type: ignore[no-untyped-def]
    return make_daemon().start()


def make_app(daemon: DaemonProcess) -> NexusApp:
    return NexusApp(daemon.socket, history_path=daemon.home / "history", blink=False)


async def loaded(pilot: Any, names: set[str]) -> Any:
    table = await until(pilot, lambda: _table(pilot.app), "the dashboard")
    await until(pilot, lambda: pilot.app.link.connected and pilot.app.operator, "the connection to the daemon")
    await until(pilot, lambda: names <= set(table.by_name), f"workflows {sorted(names)} in the table")
    return table


def _table(app: Any) -> Any:
    found = app.screen.query("WorkflowTable")
    return found.first() if found else None


async def test_trigger_from_the_table_makes_a_run_that_shows_in_the_history(tui_daemon: DaemonProcess) -> None:
    tui_daemon.call("workflows.create", {"name": "alpha", "kind": "noop"})
    tui_daemon.call("workflows.create", {"name": "hello", "kind": "noop"})
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = await loaded(pilot, {"alpha", "hello"})
        await pilot.press("down")
        assert table.current["name"] == "hello"
        await pilot.press("t")
        await until(pilot, lambda: table.by_name["hello"].get("last_run_status") == "succeeded",
                    "the row to show the run's success (pushed by the daemon)")
        assert table.by_name["alpha"].get("last_run_status") is None
        await pilot.press("enter")
        screen = await until(pilot, lambda: app.screen if type(app.screen).__name__ == "WorkflowScreen" else None,
                             "the workflow screen")
        await until(pilot, lambda: screen.runs, "the run history")
        run = screen.runs[0]
        assert (run["status"], run["trigger"], run["triggered_by"]) == ("succeeded", "manual", "root")
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "RunScreen", "the run's output screen")
    runs = tui_daemon.call("runs.list", {"workflow": "hello"})["runs"]
    assert [r["id"] for r in runs] == [run["id"]]


async def test_an_event_raised_by_the_daemon_appears_in_the_feed_and_the_table(tui_daemon: DaemonProcess) -> None:
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = await loaded(pilot, set())
        feed = app.screen.query_one("ActivityFeed")
        tui_daemon.call("workflows.create", {"name": "made-elsewhere", "kind": "noop"})
        await until(pilot, lambda: any("made-elsewhere" in (e.get("message") or "") for e in feed.rows),
                    "the pushed event in the feed")
        assert "made-elsewhere" in feed.rows[0]["message"]  # newest first
        await until(pilot, lambda: "made-elsewhere" in table.by_name, "the new workflow in the table")
        tui_daemon.call("workflows.delete", {"name": "made-elsewhere"})
        await until(pilot, lambda: "made-elsewhere" not in table.by_name, "the deleted workflow to go")


async def test_command_line_runs_registry_commands_and_keeps_history(tui_daemon: DaemonProcess) -> None:
    tui_daemon.call("workflows.create", {"name": "daily-report", "kind": "noop"})
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, {"daily-report"})
        await type_command(pilot, "auto:trigger daily-report --wait")
        await until(pilot, lambda: "succeeded" in command_output(app), "the waited-for run's outcome")
        await type_command(pilot, "auto:trigger")
        await until(pilot, lambda: "auto:trigger needs NAME" in command_output(app), "the usage error")
        await type_command(pilot, "auto:nope")
        await until(pilot, lambda: "unknown command 'auto:nope'" in command_output(app), "the unknown command")
        # Tab completes the command, then the workflow name.
        field = app.screen.query_one("#command-input")
        field.value, field.cursor_position = "auto:pau", 8
        await pilot.press("tab")
        assert field.value == "auto:pause "
        field.value += "dai"
        field.cursor_position = len(field.value)
        await pilot.press("tab")
        assert field.value == "auto:pause daily-report "
        await pilot.press("up")
        assert field.value == "auto:nope"
    runs = tui_daemon.call("runs.list", {"workflow": "daily-report"})["runs"]
    assert [r["status"] for r in runs] == ["succeeded"]
    assert CommandHistory(tui_daemon.home / "history").entries[-3:] == [
        "auto:trigger daily-report --wait", "auto:trigger", "auto:nope"]


async def test_god_mode_is_refused_to_a_non_admin(make_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = make_daemon(config='[[operators]]\nuser = "root"\nrole = "operator"\n').start()
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, set())
        assert app.operator["role"] == "operator"
        await type_command(pilot, "mode:god")
        await until(pilot, lambda: "god mode is for admins" in command_output(app), "the refusal")
        assert not app.god
        assert not app.has_class("-god")


async def test_god_mode_shows_ids_and_its_sql_console_refuses_delete(tui_daemon: DaemonProcess) -> None:
    tui_daemon.call("workflows.create", {"name": "hello", "kind": "noop"})
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = await loaded(pilot, {"hello"})
        await type_command(pilot, 'db:query "SELECT 1"')
        await until(pilot, lambda: "needs god mode" in command_output(app), "db:query refused outside god mode")
        await type_command(pilot, "mode:god")
        await until(pilot, lambda: app.god, "god mode")
        assert "id" in [c.key for c in table.columns]
        await type_command(pilot, 'db:query "DELETE FROM runs"')
        await until(pilot, lambda: "DELETE is refused" in command_output(app), "the refusal of DELETE")
        await type_command(pilot, 'db:query "SELECT name FROM workflows"')
        await until(pilot, lambda: "hello" in command_output(app).split("SELECT name FROM workflows")[-1],
                    "the query's rows")
        await type_command(pilot, "mode:normal")
        await until(pilot, lambda: not app.god, "normal mode")
    events = tui_daemon.call("activity.recent", {"limit": 50})
    assert any(e["action"] == "god.call" and "db.query" in e["message"] for e in events)


async def test_a_failed_run_raises_a_toast_and_the_unread_count(tui_daemon: DaemonProcess) -> None:
    tui_daemon.call("workflows.create", {"name": "boom", "kind": "command", "retries": 0,
                                         "payload": {"argv": ["false"]}})
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, {"boom"})
        assert app.unread == 0
        await pilot.press("t")
        await until(pilot, lambda: app.unread == 1, "the unread count")
        await until(pilot, lambda: any("boom failed" in (n.title or "") for n in app._notifications),
                    "a toast for the failed run")
        await pilot.press("N")
        screen = await until(pilot, lambda: app.screen if type(app.screen).__name__ == "NotificationsScreen"
                             else None, "the notifications screen")
        await until(pilot, lambda: screen.items, "the notification")
        await pilot.press("M")
        await until(pilot, lambda: app.unread == 0, "all marked read")
    assert tui_daemon.call("notifications.list", {"unread_only": True})["unread"] == 0


async def test_losing_the_daemon_shows_a_banner_and_resyncs_when_it_is_back(tui_daemon: DaemonProcess) -> None:
    tui_daemon.call("workflows.create", {"name": "before", "kind": "noop"})
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = await loaded(pilot, {"before"})
        banner = app.screen.query_one("#banner")
        assert not banner.display
        tui_daemon.stop()
        await until(pilot, lambda: banner.display and app.link.state.status == "reconnecting", "the banner")
        title = app.screen.query_one("#system-title")
        assert "healthy" not in plain(title.render()) and "no answer from the daemon" in plain(title.render())
        tui_daemon.start()
        tui_daemon.call("workflows.create", {"name": "after", "kind": "noop"})
        app.link.retry_now()
        await until(pilot, lambda: not banner.display, "the banner to go", timeout=30)
        await until(pilot, lambda: {"before", "after"} <= set(table.by_name), "the table to resync")
        await until(pilot, lambda: "healthy" in plain(title.render()), "the system panel, healthy again")


async def test_a_daemon_that_died_is_started_again_and_one_that_was_stopped_is_not(
        tui_daemon: DaemonProcess) -> None:
    # With the embedded default the TUI is given a way to start a background daemon, as `nexus` does.
    starts: list[int] = []

    def starter() -> int:
        tui_daemon.start()
        assert tui_daemon.proc is not None
        starts.append(tui_daemon.proc.pid)
        return tui_daemon.proc.pid

    tui_daemon.call("workflows.create", {"name": "before", "kind": "noop"})
    app = NexusApp(tui_daemon.socket, history_path=tui_daemon.home / "history", blink=False, starter=starter)
    async with app.run_test(size=SIZE) as pilot:
        table = await loaded(pilot, {"before"})
        banner = app.screen.query_one("#banner")
        tui_daemon.kill()  # SIGKILL: its socket is left behind, the sign of a daemon that died
        await until(pilot, lambda: app.link.state.status == "connected" and app.link.state.generation == 2,
                    "a new daemon and the connection to it", timeout=40)
        assert len(starts) == 1
        assert any("started a new one" in n.message for n in app._notifications)
        tui_daemon.call("workflows.create", {"name": "after", "kind": "noop"})
        await until(pilot, lambda: {"before", "after"} <= set(table.by_name), "the table, live again")

        tui_daemon.stop()  # a clean stop removes the socket: the operator meant it
        await until(pilot, lambda: banner.display and "it was stopped" in str(banner.render()), "the banner")
        await pilot.pause(2.0)
        assert len(starts) == 1 and app.link.state.status == "reconnecting"


async def test_filter_as_you_type_and_sort(tui_daemon: DaemonProcess) -> None:
    tui_daemon.call("workflows.apply", {"workflows": [
        {"name": "daily-report", "kind": "noop"}, {"name": "hubspot-sync", "kind": "noop"},
        {"name": "weekly-report", "kind": "noop"}]})
    tui_daemon.call("workflows.pause", {"name": "weekly-report"})
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = await loaded(pilot, {"daily-report", "hubspot-sync", "weekly-report"})
        await pilot.press("slash", "r", "e", "p")
        assert [w["name"] for w in table.rows] == ["daily-report", "weekly-report"]
        await pilot.press("space", "p", "a", "u", "s")
        assert [w["name"] for w in table.rows] == ["weekly-report"]
        await pilot.press("enter")  # keeps the filter and goes back to the table
        assert table.has_focus and [w["name"] for w in table.rows] == ["weekly-report"]
        await pilot.press("slash", "backspace", "backspace", "backspace", "backspace", "backspace")
        assert [w["name"] for w in table.rows] == ["daily-report", "weekly-report"]
        await pilot.press("escape")
        assert len(table.rows) == 3 and table.has_focus
        await pilot.press("S")
        assert [w["name"] for w in table.rows] == ["weekly-report", "hubspot-sync", "daily-report"]


async def test_a_wide_dashboard_shows_each_workflows_time_zone(tui_daemon: DaemonProcess) -> None:
    tui_daemon.call("workflows.apply", {"workflows": [
        {"name": "berlin-report", "kind": "noop", "cron": "0 8 * * *", "timezone": "Europe/Berlin"},
        {"name": "ny-report", "kind": "noop", "cron": "0 8 * * *", "timezone": "America/New_York"},
        {"name": "by-hand", "kind": "noop"}]})
    app = make_app(tui_daemon)
    async with app.run_test(size=(180, 36)) as pilot:
        table = await loaded(pilot, {"berlin-report", "ny-report", "by-hand"})
        await pilot.pause()
        assert "ZONE" in [c.label for c in table.columns]
        lines = [table.render_line(y).text for y in range(5)]
        berlin = next(line for line in lines if "berlin-report" in line)
        new_york = next(line for line in lines if "ny-report" in line)
        by_hand = next(line for line in lines if "by-hand" in line)
        assert "Europe/Berlin" in berlin and "America/New_York" in new_york  # whole, not cropped
        assert "UTC" not in by_hand  # a workflow without a schedule has no zone to show


async def test_new_workflow_form_checks_the_schedule_as_you_type(tui_daemon: DaemonProcess) -> None:
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = await loaded(pilot, set())
        await pilot.press("n")
        form = await until(pilot, lambda: app.screen if type(app.screen).__name__ == "NewWorkflowScreen" else None,
                           "the form")
        form.query_one("#name").value = "nightly"
        form.query_one("#timezone").value = "Europe/Berlin"
        form.query_one("#cron").value = "61 * * * *"
        preview = form.query_one("#preview")
        await until(pilot, lambda: "minute" in str(preview.render()) and "✗" in str(preview.render()),
                    "the cron error")
        form.query_one("#cron").value = "30 2 * * *"
        await until(pilot, lambda: str(preview.render()).count("CE") >= 5, "five next fires in the zone")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "nightly" in table.by_name, "the new workflow in the table")
    assert tui_daemon.call("workflows.get", {"name": "nightly"})["cron"] == "30 2 * * *"


async def test_a_burst_of_keys_is_taken_in_the_order_it_was_typed(tui_daemon: DaemonProcess) -> None:
    # Editing keys (tab, ctrl+a, ctrl+k, backspace, enter) run where they were typed, not after the
    # characters that followed them; and a tab to the next field takes the rest of the burst with it.
    tui_daemon.call("workflows.create", {"name": "smoke-test", "kind": "noop"})
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, {"smoke-test"})
        burst(app, ":auto:trigger smo", "tab", "ctrl+a", "ctrl+k", "sys:healtj", "backspace", "h", "enter",
              "auto:nope", "enter")
        await until(pilot, lambda: "unknown command 'auto:nope'" in command_output(app), "the second command")
        await until(pilot, lambda: "redis" in command_output(app), "sys:health's answer")
        echoed = [line for line in command_output(app).splitlines() if line.startswith("›")]
        assert echoed == ["› sys:health", "› auto:nope"]
        assert app.screen.query_one("#command-input").value == ""
        assert tui_daemon.call("runs.list", {"workflow": "smoke-test"})["runs"] == []
        burst(app, "escape", "n", "nightlyx", "backspace", "tab", "30 2 * * *", "tab", "Europe/Berlin")
        form = await until(pilot, lambda: app.screen if type(app.screen).__name__ == "NewWorkflowScreen" else None,
                           "the form")
        await until(pilot, lambda: form.query_one("#timezone").value == "Europe/Berlin", "the time zone typed")
        assert form.query_one("#name").value == "nightly"
        assert form.query_one("#cron").value == "30 2 * * *"


async def test_deleting_asks_first(tui_daemon: DaemonProcess) -> None:
    tui_daemon.call("workflows.create", {"name": "doomed", "kind": "noop"})
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = await loaded(pilot, {"doomed"})
        await pilot.press("d")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", "the question")
        await pilot.press("n")
        await until(pilot, lambda: type(app.screen).__name__ == "DashboardScreen", "back on the dashboard")
        assert "doomed" in table.by_name
        await pilot.press("d")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", "the question again")
        await pilot.press("y")
        await until(pilot, lambda: "doomed" not in table.by_name, "the row to go")
    assert tui_daemon.call("workflows.list") == []


def test_tui_sources_never_import_the_daemon() -> None:
    root = Path(__file__).resolve().parent.parent / "nexus_tui"
    offenders = [str(p) for p in root.rglob("*.py") if "nexus_daemon" in p.read_text()]
    assert offenders == []


async def test_a_workflow_that_requires_approval_asks_first_except_in_god_mode(tui_daemon: DaemonProcess) -> None:
    tui_daemon.call("workflows.create", {"name": "deploy", "kind": "noop", "requires_approval": True})
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = await loaded(pilot, {"deploy"})
        await pilot.press("t")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", "the approval question")
        await pilot.press("n")
        await until(pilot, lambda: type(app.screen).__name__ == "DashboardScreen", "back without running")
        assert tui_daemon.call("runs.list", {"workflow": "deploy"})["runs"] == []
        await pilot.press("t")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", "the question again")
        await pilot.press("y")
        await until(pilot, lambda: table.by_name["deploy"].get("last_run_status") == "succeeded", "the approved run")
        await type_command(pilot, "mode:god")
        await until(pilot, lambda: app.god, "god mode")
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ == "DashboardScreen", "the dashboard")
        await pilot.press("t")
        await until(pilot, lambda: len(tui_daemon.call("runs.list", {"workflow": "deploy"})["runs"]) == 2,
                    "a second run without a question")
        assert type(app.screen).__name__ == "DashboardScreen"


async def test_r_reruns_a_dead_run_from_the_workflow_screen(tui_daemon: DaemonProcess) -> None:
    tui_daemon.call("workflows.create", {"name": "flaky", "kind": "command", "retries": 1, "backoff": 0.1,
                                         "payload": {"argv": ["false"]}})
    first = tui_daemon.call("workflows.trigger", {"name": "flaky", "wait": True, "wait_timeout": 30})
    assert first["status"] == "dead"
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, {"flaky"})
        await pilot.press("enter")
        screen = await until(pilot, lambda: app.screen if type(app.screen).__name__ == "WorkflowScreen" else None,
                             "the workflow screen")
        await until(pilot, lambda: screen.runs, "the run history")
        await pilot.press("r")
        await until(pilot, lambda: len(screen.runs) == 2, "the re-run in the history")
    runs = tui_daemon.call("runs.list", {"workflow": "flaky"})["runs"]
    assert runs[1]["id"] == first["id"] and runs[0]["trigger"] == "manual"


async def test_god_mode_bulk_pauses_a_multi_selection(tui_daemon: DaemonProcess) -> None:
    tui_daemon.call("workflows.apply", {"workflows": [{"name": n, "kind": "noop"} for n in ("a1", "a2", "a3")]})
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = await loaded(pilot, {"a1", "a2", "a3"})
        await pilot.press("space")
        assert not table.selected  # selecting many is a god mode feature
        await type_command(pilot, "mode:god")
        await until(pilot, lambda: app.god, "god mode")
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ == "DashboardScreen", "the dashboard")
        table.focus()
        await pilot.press("space", "space")
        assert table.selected == {"a1", "a2"}
        await pilot.press("p")
        await until(pilot, lambda: [table.by_name[n]["status"] for n in ("a1", "a2", "a3")]
                    == ["paused", "paused", "active"], "both selected workflows paused")
    events = tui_daemon.call("activity.recent", {"limit": 20})
    assert any(e["action"] == "god.call" and "workflows.bulk" in e["message"] for e in events)


async def test_the_command_palette_offers_registry_commands(tui_daemon: DaemonProcess) -> None:
    app = make_app(tui_daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, set())
        await pilot.press("ctrl+p")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette", "the palette")
        await pilot.press(*"auto:stats")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: "success rate" in command_output(app), "auto:stats run from the palette")
