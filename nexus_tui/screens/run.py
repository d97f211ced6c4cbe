"""One run in full: every attempt, its whole output tail and error."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from nexus_core.commands import render
from nexus_core.errors import NexusError
from nexus_tui.widgets.workflows.actions import rerun


class RunScreen(ModalScreen[None]):
    """Scrolls with the arrow and page keys; escape closes; r re-runs it when it failed."""

    BINDINGS = [Binding("escape,q", "close", "close"), Binding("r", "rerun", "re-run failed")]

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id
        self.run: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="run-box", classes="dialog"):
            yield Static(Text(f"loading run {self.run_id}…", style="dim"), id="run-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()
        self.load()

    @work(group="load", exclusive=True, exit_on_error=False)
    async def load(self) -> None:
        try:
            run = await self.app.link.call("runs.get", {"id": self.run_id})  # type: ignore[attr-defined]
        except NexusError as exc:
            self.query_one("#run-detail", Static).update(Text(exc.message, style="bold red"))
            return
        self.run = run
        parts: list[Any] = [render.run(run)]
        if run.get("error") and "\n" in run["error"]:
            parts += [Text("\nError (full)", style="bold"), Text(run["error"], style="red")]
        for attempt in run.get("attempts") or []:
            if attempt.get("output") and attempt.get("output") != run.get("output"):
                parts += [Text(f"\nOutput of attempt {attempt['attempt']}", style="bold"), Text(attempt["output"])]
        from rich.console import Group

        self.query_one("#run-detail", Static).update(Group(*parts))

    def action_close(self) -> None:
        self.dismiss(None)

    @work(group="action", exit_on_error=False)
    async def action_rerun(self) -> None:
        if self.run is not None and await rerun(self, self.run):
            self.dismiss(None)
