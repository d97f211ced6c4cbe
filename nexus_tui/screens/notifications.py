"""Notifications of failed and dead runs: read them, mark one or all as read, jump to the run."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label

from nexus_core.errors import NexusError
from nexus_tui import format as fmt
from nexus_tui.widgets.header import StatusHeader


class NotificationsScreen(Screen[None]):
    """Newest first; unread ones are marked with ●."""

    CSS_PATH = "notifications.tcss"
    BINDINGS = [
        Binding("escape,backspace", "back", "back"),
        Binding("m", "mark_read", "mark read"),
        Binding("M", "mark_all", "mark all read"),
        Binding("u", "toggle_unread", "unread only"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict[str, Any]] = []
        self.unread_only = False

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield Label("Notifications", id="notifications-title", classes="panel-title")
        table: DataTable[Any] = DataTable(id="notifications", cursor_type="row")
        table.add_columns("", "WHEN", "TITLE", "DETAIL")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        app: Any = self.app
        app.link.notifications.subscribe(self, lambda _: self.load())
        app.link.state_changed.subscribe(self, lambda s: self.load() if s.status == "connected" else None)
        self.query_one(DataTable).focus()
        self.load()

    @work(group="load", exclusive=True, exit_on_error=False)
    async def load(self) -> None:
        try:
            answer = await self.app.link.call("notifications.list",  # type: ignore[attr-defined]
                                              {"unread_only": self.unread_only, "limit": 500})
        except NexusError as exc:
            self.app.report(exc, "notifications")  # type: ignore[attr-defined]
            return
        self.items = answer["items"]
        self.app.set_unread(answer.get("unread", 0))  # type: ignore[attr-defined]
        title = f"Notifications — {answer.get('unread', 0)} unread" + (" (showing unread only)" if self.unread_only
                                                                      else "")
        self.query_one("#notifications-title", Label).update(title)
        table: DataTable[Any] = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        now = self.app.now()  # type: ignore[attr-defined]
        for n in self.items:
            style = "" if n["read"] else "bold"
            table.add_row(Text("" if n["read"] else "●", style="bold red"),
                          Text(fmt.relative(n["at"], now), style="dim"),
                          Text(n["title"], style=style + (" red" if n["level"] == "error" else "")),
                          Text(n.get("body") or "", style="dim" if n["read"] else ""), key=str(n["id"]))
        if not self.items:
            table.add_row("", "", Text("No notifications.", style="dim"), "")
        elif row < len(self.items):
            table.move_cursor(row=row)

    def current(self) -> dict[str, Any] | None:
        table: DataTable[Any] = self.query_one(DataTable)
        if not self.items or table.cursor_row >= len(self.items):
            return None
        return self.items[table.cursor_row]

    async def _mark(self, ids: list[int] | None) -> None:
        params: dict[str, Any] = {"all": True} if ids is None else {"ids": ids}
        try:
            await self.app.link.call("notifications.read", params)  # type: ignore[attr-defined]
        except NexusError as exc:
            self.app.report(exc, "mark read")  # type: ignore[attr-defined]
            return
        self.load()

    @work(group="action", exit_on_error=False)
    async def action_mark_read(self) -> None:
        note = self.current()
        if note is not None and not note["read"]:
            await self._mark([note["id"]])

    @work(group="action", exit_on_error=False)
    async def action_mark_all(self) -> None:
        await self._mark(None)

    def action_toggle_unread(self) -> None:
        self.unread_only = not self.unread_only
        self.load()

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        note = self.current()
        if note is None:
            return
        if not note["read"]:
            self.action_mark_read()
        if note.get("run_id"):
            from nexus_tui.screens.run import RunScreen

            self.app.push_screen(RunScreen(note["run_id"]))

    def action_back(self) -> None:
        self.app.pop_screen()
