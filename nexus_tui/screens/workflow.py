"""One workflow: its definition, next fires and run history; a run's output; re-running a failed run."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from nexus_core.commands import render
from nexus_core.errors import NexusError
from nexus_tui import format as fmt
from nexus_tui.link import LinkState
from nexus_tui.widgets.header import StatusHeader
from nexus_tui.widgets.workflows.actions import WorkflowActions, rerun

RUNS_SHOWN = 100


def definition(wf: dict[str, Any], god: bool) -> Any:
    pairs: list[tuple[str, Any]] = [
        ("name", wf["name"]), ("kind", f"{wf['kind']} (queue {wf['queue']})"), ("status", fmt.status(wf["status"])),
        ("schedule", f"{fmt.schedule_words(wf)}" + (f"  [{wf['cron']} {wf['timezone']}]" if wf.get("cron") else "")),
        ("description", wf.get("description") or "—"),
        ("attempts", f"{wf['attempts']} (backoff {wf['backoff']:g}s doubling), timeout {wf['timeout']:g}s"),
        ("policies", f"misfire {wf['misfire']}, grace {wf['grace']:g}s, overlap {wf['overlap']}"
                     + (", requires approval" if wf.get("requires_approval") else "")),
        ("success", f"{fmt.success_rate(wf)} of {(wf.get('runs_succeeded') or 0) + (wf.get('runs_failed') or 0)} "
                    "finished runs" if wf.get("success_rate") is not None else "no finished runs yet"),
        ("payload", json.dumps(wf.get("payload") or {}, sort_keys=True)),
        ("created", f"{fmt.local_time(wf.get('created_at'))} by {wf.get('created_by')}"),
    ]
    if god:
        pairs.append(("id", wf["id"]))
    return render.key_values(pairs)


def next_fires(answer: dict[str, Any] | None) -> Text:
    text = Text.assemble(("Next fires\n", "bold"))
    if not answer:
        return text
    from datetime import datetime
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(answer["timezone"])
    for fire in answer.get("fires") or []:
        local = datetime.fromisoformat(fire["at"]).astimezone(zone)
        text.append(f"{local:%a %Y-%m-%d %H:%M:%S %Z}\n")
    if answer.get("notice"):
        text.append(answer["notice"], style="yellow")
    elif not answer.get("fires"):
        text.append("none", style="dim")
    return text


class WorkflowScreen(WorkflowActions, Screen[None]):
    """Opened with enter on the dashboard; escape goes back."""

    CSS_PATH = "workflow.tcss"
    BINDINGS = [
        Binding("escape,backspace", "back", "back", id="back"),
        Binding("t", "trigger", "trigger", id="trigger"),
        Binding("p", "pause_resume", "pause/resume", id="pause"),
        Binding("r", "rerun", "re-run failed", id="rerun"),
        Binding("d", "delete", "delete", id="delete"),
    ]

    def __init__(self, name: str):
        super().__init__()
        self.workflow_name = name
        self.workflow: dict[str, Any] | None = None
        self.runs: list[dict[str, Any]] = []
        self._reload_timer: Any = None

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield Static("", id="banner")
        with Horizontal(id="top"):
            yield Static(Text(f"loading {self.workflow_name}…", style="dim"), id="definition")
            yield Static("", id="next-fires")
        yield Label("Runs (enter: output and error · r: re-run a failed run)", classes="panel-title")
        table: DataTable[Any] = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        table.add_columns("RUN", "TRIGGER", "STATUS", "ATTEMPT", "STARTED", "DURATION", "ERROR")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        app: Any = self.app
        app.link.runs.subscribe(self, self._runs_changed)
        app.link.state_changed.subscribe(self, self._link_changed)
        app.link.activity.subscribe(self, self._activity)
        self.query_one("#banner", Static).display = False
        self.query_one(DataTable).focus()
        self.load()

    def _link_changed(self, state: LinkState) -> None:
        if state.status == "connected":
            self.load()

    def _runs_changed(self, change: dict[str, Any]) -> None:
        if self.workflow_name in (change.get("workflows") or []):
            self._schedule_reload()

    def _activity(self, events: list[dict[str, Any]]) -> None:
        if any(e.get("target") == self.workflow_name and str(e.get("action", "")).startswith("workflow.")
               for e in events):
            self._schedule_reload()

    def _schedule_reload(self) -> None:
        if self._reload_timer is None:
            self._reload_timer = self.set_timer(0.3, self._reload_now)

    def _reload_now(self) -> None:
        self._reload_timer = None
        self.load()

    @work(group="load", exclusive=True, exit_on_error=False)
    async def load(self) -> None:
        link: Any = self.app.link  # type: ignore[attr-defined]
        banner = self.query_one("#banner", Static)
        try:
            wf = await link.call("workflows.get", {"name": self.workflow_name})
            runs = await link.call("runs.list", {"workflow": self.workflow_name, "limit": RUNS_SHOWN})
            nxt = await link.call("workflows.next", {"name": self.workflow_name, "count": 5})
        except NexusError as exc:
            if exc.kind == "not_found":
                banner.update(Text(f" {self.workflow_name} no longer exists (deleted). Escape goes back.",
                                   style="bold"))
                banner.display = True
            else:
                self.app.report(exc, f"loading {self.workflow_name}")  # type: ignore[attr-defined]
            return
        banner.display = False
        self.workflow = wf
        self.query_one("#definition", Static).update(definition(wf, self.app.god))  # type: ignore[attr-defined]
        self.query_one("#next-fires", Static).update(next_fires(nxt))
        self.show_runs(runs["runs"])

    def show_runs(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs
        table: DataTable[Any] = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        now = self.app.now()  # type: ignore[attr-defined]
        for r in runs:
            trigger = r["trigger"] + (f" by {r['triggered_by']}" if r["trigger"] == "manual" else "")
            table.add_row(r["id"][-12:], trigger, fmt.status(r["status"]), f"{r['attempt']}/{r['max_attempts']}",
                          fmt.relative(r.get("started_at") or r.get("created_at"), now),
                          fmt.duration_ms(r.get("duration_ms")),
                          Text((r.get("error") or "").splitlines()[0][:80] if r.get("error") else "", style="red"),
                          key=r["id"])
        if runs:
            table.move_cursor(row=min(row, len(runs) - 1))

    def current_run(self) -> dict[str, Any] | None:
        table: DataTable[Any] = self.query_one(DataTable)
        if not self.runs or table.cursor_row >= len(self.runs):
            return None
        return self.runs[table.cursor_row]

    @on(DataTable.RowSelected)
    def _open_run(self, event: DataTable.RowSelected) -> None:
        from nexus_tui.screens.run import RunScreen

        run = self.current_run()
        if run is not None:
            self.app.push_screen(RunScreen(run["id"]))

    @work(group="action", exit_on_error=False)
    async def action_rerun(self) -> None:
        run = self.current_run()
        if run is not None and await rerun(self, run):
            self._schedule_reload()

    def action_back(self) -> None:
        self.app.pop_screen()

    def targets(self) -> list[dict[str, Any]]:
        return [self.workflow] if self.workflow else []

    def after_action(self, names: list[str], *, gone: bool = False) -> None:
        if gone:
            self.app.pop_screen()
        else:
            self._schedule_reload()
