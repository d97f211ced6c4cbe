"""The dashboard: workflows, the live activity feed and the system panel — one glance, is everything fine?"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.actions import SkipAction
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from nexus_core.errors import NexusError
from nexus_tui.keys import is_text_entry
from nexus_tui.link import LinkState
from nexus_tui.widgets.feed import ActivityFeed
from nexus_tui.widgets.filter_field import FilterField
from nexus_tui.widgets.header import StatusHeader
from nexus_tui.widgets.line import Line
from nexus_tui.widgets.system import SystemPanel
from nexus_tui.widgets.vtable import VirtualTable
from nexus_tui.widgets.workflows.actions import WorkflowActions
from nexus_tui.widgets.workflows.table import WorkflowTable

HEALTH_EVERY_S = 5.0
RATE_EVERY_S = 15.0
#: Rows changed by runs are fetched again at most this often.
REFRESH_EVERY_S = 0.5
#: Workflows drawn before the whole list has arrived (more than a screen, fewer than make a wait).
FIRST_PAGE = 200
#: More changed workflows than this and the whole list is fetched instead.
PARTIAL_LIMIT = 500
#: Below this width the side panel goes under the workflows and the system panel shrinks to its title.
NARROW = 110
WORKFLOW_ACTIONS = ("workflow.created", "workflow.updated", "workflow.deleted", "workflow.paused",
                    "workflow.resumed", "workflow.completed")


def system_title(health: dict[str, Any] | None, rate: dict[str, Any] | None, offline: bool = False) -> Text:
    """The system panel's title, which is all of it that shows on a narrow terminal."""
    text = Text("System", style="bold")
    if offline:
        return text.append(" — unknown: no answer from the daemon", style="bold red")
    if not health:
        return text
    text.append(" — ")
    text.append("healthy" if health.get("ok") else "DEGRADED", style="green" if health.get("ok") else "bold red")
    ready = sum((q or {}).get("ready", 0) for q in (health.get("queues") or {}).values())
    text.append(f" · {ready} queued")
    if rate is not None:
        failed = rate.get("failed_last_hour", 0)
        text.append(f" · {failed} failed in 1h", style="bold red" if failed else "")
    return text


class DashboardScreen(WorkflowActions, Screen[None]):
    """The home screen."""

    CSS_PATH = "dashboard.tcss"
    BINDINGS = [
        # priority, like `:` (see NexusApp.hold_keys): the keys typed right after go to the field opened
        Binding("slash", "filter", "filter", id="filter", priority=True),
        Binding("t", "trigger", "trigger", id="trigger"),
        Binding("p", "pause_resume", "pause/resume", id="pause"),
        Binding("d", "delete", "delete", id="delete"),
        Binding("n", "new_workflow", "new", id="new", priority=True),
        Binding("s", "sort", "sort", id="sort"),
        Binding("S", "sort_reverse", "reverse", show=False, id="sort-reverse"),
        Binding("space", "select", "select", show=False, id="select"),
        Binding("ctrl+r", "reload", "reload", show=False, id="reload"),
    ]

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        yield Static("", id="banner")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield Line("Workflows", id="workflows-title", classes="panel-title")
                yield FilterField("filter: name, kind or status", id="workflow-filter", classes="filter")
                yield WorkflowTable(self.app.now, id="workflows")  # type: ignore[attr-defined]
            with Vertical(id="right"):
                yield Line("System", id="system-title", classes="panel-title")
                yield SystemPanel(id="system")
                yield Label("Activity", id="activity-title", classes="panel-title")
                yield FilterField("filter the feed", id="feed-filter", classes="filter")
                yield ActivityFeed(id="feed")
                yield Static("", id="debug")
        yield Footer()

    def on_mount(self) -> None:
        app: Any = self.app
        app.link.state_changed.subscribe(self, self._link_changed)
        app.link.activity.subscribe(self, self._activity)
        app.link.runs.subscribe(self, self._runs_changed)
        app.link.mode.subscribe(self, self._mode_changed)
        self._pending: set[str] = set()
        self._refresh_timer: Any = None
        self._loaded_generation = 0
        self._rate: dict[str, Any] | None = None
        self._health: dict[str, Any] | None = None
        self.loading_all = False
        self.set_interval(HEALTH_EVERY_S, self._tick_health)
        self.set_interval(RATE_EVERY_S, self._tick_rate)
        self.set_interval(5.0, self._tick_times)
        self.table.focus()
        self._link_changed(app.link.state)
        self._mode_changed(app.mode_info)
        self.set_class(self.size.width < NARROW, "-narrow")

    def on_resize(self, event: Any) -> None:
        self.set_class(self.size.width < NARROW, "-narrow")

    @property
    def table(self) -> WorkflowTable:
        return self.query_one(WorkflowTable)

    @property
    def feed(self) -> ActivityFeed:
        return self.query_one(ActivityFeed)

    # -- the daemon ---------------------------------------------------------------------------

    def _link_changed(self, state: LinkState) -> None:
        banner = self.query_one("#banner", Static)
        if state.status == "connected":
            banner.display = False
            if state.generation != self._loaded_generation:
                self._loaded_generation = state.generation
                self.load_all()
            return
        banner.display = True
        # What the panel last heard is no longer known to be true: it says so instead of "healthy".
        self._health = None
        self.query_one(SystemPanel).show_health(None, offline=True)
        self.query_one("#system-title", Line).set(system_title(None, None, offline=True))
        link = self.app.link  # type: ignore[attr-defined]
        what = "Lost the daemon" if state.generation else "No daemon answers"
        if state.status == "starting":
            todo = "  — it died; starting a new one in the background…"
        elif link.starter is not None and link.stopped_on_purpose:
            todo = ("  — it was stopped. Any `nexus` command (e.g. `nexus sys:health`) or `nexus daemon` starts it "
                    "again; the screen resyncs when it is back.")
        else:
            todo = "  — retrying with back-off; the screen resyncs when it is back. Start one with `nexus daemon`."
        banner.update(Text.assemble((f" {what}: ", "bold"), state.error or "", todo))

    @work(group="load", exclusive=True, exit_on_error=False)
    async def load_all(self) -> None:
        link = self.app.link  # type: ignore[attr-defined]
        self._tick_health()
        self._tick_rate()
        # A screenful of workflows and the feed first, then the whole list: a large organization's dashboard
        # is drawn before the daemon has built (and this process parsed) all of it.
        try:
            workflows, events = await asyncio.gather(link.call("workflows.list", {"limit": FIRST_PAGE}),
                                                     link.call("activity.recent", {"limit": 200}))
            self.feed.load(events)
            if len(workflows) == FIRST_PAGE:
                self.loading_all = True
                self._show_workflows(workflows)
                await asyncio.sleep(0)  # let the first page be drawn before the long answer is parsed
                workflows = await link.call("workflows.list")
        except NexusError as exc:
            self.app.report(exc, "loading the dashboard")  # type: ignore[attr-defined]
            return
        finally:
            self.loading_all = False
        self._show_workflows(workflows)

    def _show_workflows(self, workflows: list[dict[str, Any]]) -> None:
        self.table.load(workflows)
        self._workflows_changed()
        if len(workflows) > 1000:
            # Tens of thousands of long-lived dicts make every full garbage collection a visible pause
            # (~0.2 s while typing a filter); they hold no reference cycles, so the collector can skip them.
            gc.collect()
            gc.freeze()

    def _workflows_changed(self, names: bool = True) -> None:
        table = self.table
        if names:  # for the : line's completion
            self.app.workflow_names = sorted(table.by_name)  # type: ignore[attr-defined]
        shown, total = len(table.rows), len(table.by_name)
        title = f"Workflows ({total})" if shown == total else f"Workflows ({shown} of {total}, filter {table.filter_text!r})"
        if self.loading_all:
            title = f"Workflows (the first {total}; loading the rest…)"
        if table.selected:
            title += f" · {len(table.selected)} selected"
        self.query_one("#workflows-title", Line).set(title)
        self._show_debug()

    def _activity(self, events: list[dict[str, Any]]) -> None:
        self.feed.add(events)
        names = {e["target"] for e in events if e.get("action") in WORKFLOW_ACTIONS and e.get("target")}
        if any(e.get("action") == "workflow.updated" and "name" in (e.get("data") or {}).get("fields", [])
               for e in events):
            self.load_all()
            return
        if names:
            self._queue_refresh(names)

    def _runs_changed(self, change: dict[str, Any]) -> None:
        self._queue_refresh(set(change.get("workflows") or []))
        if change.get("finished"):
            self._rate_dirty = True

    def _queue_refresh(self, names: set[str]) -> None:
        self._pending |= names
        if self._refresh_timer is None and self._pending:
            self._refresh_timer = self.set_timer(REFRESH_EVERY_S, self._refresh_pending)

    def _refresh_pending(self) -> None:
        self._refresh_timer = None
        names, self._pending = sorted(self._pending), set()
        if names:
            self.refresh_rows(names)

    @work(group="rows", exit_on_error=False)
    async def refresh_rows(self, names: list[str]) -> None:
        link = self.app.link  # type: ignore[attr-defined]
        try:
            if len(names) > PARTIAL_LIMIT:
                self._show_workflows(await link.call("workflows.list"))
                return
            rows = await link.call("workflows.list", {"names": names})
        except NexusError as exc:
            if exc.field == "names":  # an older daemon: fetch everything
                self._show_workflows(await link.call("workflows.list"))
            return
        found = {w["name"] for w in rows}
        self.table.update_some(rows, gone=[n for n in names if n not in found])
        self._workflows_changed()

    def _tick_health(self) -> None:
        if self.app.link.connected:  # type: ignore[attr-defined]
            self.load_health()

    def _tick_rate(self) -> None:
        if self.app.link.connected:  # type: ignore[attr-defined]
            self.load_rate()

    def _tick_times(self) -> None:
        self.table.invalidate()
        if getattr(self, "_rate_dirty", False):
            self._rate_dirty = False
            self._tick_rate()

    @work(group="health", exclusive=True, exit_on_error=False)
    async def load_health(self) -> None:
        try:
            health = await self.app.link.call("system.health")  # type: ignore[attr-defined]
        except NexusError:
            return
        self._health = health
        self.query_one(SystemPanel).show_health(health)
        self.query_one("#system-title", Line).set(system_title(health, self._rate))

    @work(group="rate", exclusive=True, exit_on_error=False)
    async def load_rate(self) -> None:
        try:
            rate = await self.app.link.call("runs.rate", {"minutes": 30})  # type: ignore[attr-defined]
        except NexusError:
            rate = None
        self._rate = rate
        self.query_one(SystemPanel).show_rate(rate)
        if self._health is not None:
            self.query_one("#system-title", Line).set(system_title(self._health, rate))

    # -- power mode -----------------------------------------------------------------------------

    def _mode_changed(self, info: dict[str, Any]) -> None:
        god = info.get("mode") == "god"
        self.table.set_show_ids(god)
        if not god:
            self.table.clear_selection()
        self.query_one("#debug", Static).display = god
        self._show_debug()

    @on(VirtualTable.Highlighted)
    def _highlighted(self, event: VirtualTable.Highlighted) -> None:
        self._show_debug()

    def _show_debug(self) -> None:
        app: Any = self.app
        if not app.god:
            return
        lines = Text.assemble(("debug (god mode): last calls, then the selected row\n", "bold yellow"))
        client = app.link.client
        if client is not None:
            for t in list(client.timings)[-6:]:
                lines.append(f"{t.method:<24} {t.ms:7.1f} ms {'ok' if t.ok else 'ERR'}\n",
                             style="" if t.ok else "red")
        focused = self.focused
        row = focused.current if isinstance(focused, VirtualTable) else self.table.current
        if row is not None:
            lines.append(json.dumps(row, indent=1, default=str)[:1500], style="dim")
        self.query_one("#debug", Static).update(lines)

    # -- keys -----------------------------------------------------------------------------------

    def _open_field(self) -> None:
        """A key that opens a text field: left to a field that has focus as typed text; otherwise the keys
        typed after it are held for the field it opens."""
        if is_text_entry(self.focused) or self.app.screen is not self:
            raise SkipAction()
        self.app.hold_keys()  # type: ignore[attr-defined]

    def action_filter(self) -> None:
        self._open_field()
        target = "#feed-filter" if self.focused is self.feed else "#workflow-filter"
        field = self.query_one(target, FilterField)
        field.display = True
        field.focus()

    def action_new_workflow(self) -> None:
        self._open_field()
        self.action_new()

    @on(FilterField.Changed, ".filter")
    def _filter_changed(self, event: FilterField.Changed) -> None:
        if isinstance(event, FilterField.Submitted):
            (self.table if event.field.id == "workflow-filter" else self.feed).focus()
            return
        if event.field.id == "workflow-filter":
            self.table.set_filter(event.value)
            self._workflows_changed(names=False)
        else:
            self.feed.set_filter(event.value)

    def key_escape(self) -> None:
        focused = self.focused
        if isinstance(focused, FilterField):
            focused.value = ""
            focused.display = False
            (self.table if focused.id == "workflow-filter" else self.feed).focus()
        elif self.table.selected:
            self.table.clear_selection()
            self._workflows_changed()

    def action_sort(self) -> None:
        self.table.next_sort()

    def action_sort_reverse(self) -> None:
        self.table.sort_reverse = not self.table.sort_reverse
        self.table.resort()

    def action_reload(self) -> None:
        self.load_all()

    def action_select(self) -> None:
        if not self.app.god:  # type: ignore[attr-defined]
            self.app.notify("multi-selection is a god mode feature (`:mode:god`, admins only)", timeout=4)
            return
        self.table.toggle_selected()
        self.table.action_cursor(1)
        self._workflows_changed()

    @on(VirtualTable.Selected, "#workflows")
    def _open(self, event: VirtualTable.Selected) -> None:
        from nexus_tui.screens.workflow import WorkflowScreen

        self.app.push_screen(WorkflowScreen(event.row["name"]))

    def targets(self) -> list[dict[str, Any]]:
        """The workflows an action applies to: the god-mode selection, else the row under the cursor."""
        table = self.table
        if table.selected:
            return [table.by_name[n] for n in sorted(table.selected) if n in table.by_name]
        return [table.current] if table.current is not None else []

    def after_action(self, names: list[str], *, gone: bool = False) -> None:
        if gone:
            self.table.update_some([], gone=names)
            self._workflows_changed()
        else:
            self._queue_refresh(set(names))
