"""The new-workflow form: checks the cron expression and the zone as you type and shows the next five fires."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from nexus_core import schedule
from nexus_core.errors import InvalidError, NexusError
from nexus_tui.format import cron_words
from nexus_tui.widgets.line_input import LineInput

FIELDS = (("name", "name", "daily-report"), ("cron", "cron", "0 8 * * 1-5  (or @daily; empty: manual only)"),
          ("timezone", "time zone", "Europe/Berlin (empty: the daemon's default)"),
          ("at", "run once at", "2026-12-24T09:00 (instead of cron)"),
          ("payload", "payload", '{"url": "https://…"}'), ("description", "description", "what it is for"),
          ("retries", "retries", "2"), ("timeout", "timeout s", "600"))


def preview(cron: str, tz: str, at: str, now: datetime) -> Text:
    """What the schedule fields mean, or why they are wrong."""
    zone_name = tz.strip() or "UTC"
    try:
        zone = schedule.zone(zone_name)
    except InvalidError as exc:
        return Text(f"✗ {exc.message}", style="bold red")
    if cron.strip() and at.strip():
        return Text("✗ give either a cron expression or a run-once time, not both", style="bold red")
    if at.strip():
        try:
            when = schedule.parse_at(at.strip(), zone_name, now)
        except InvalidError as exc:
            return Text(f"✗ {exc.message}", style="bold red")
        return Text(f"✓ runs once at {when.astimezone(zone):%a %Y-%m-%d %H:%M %Z}", style="green")
    if not cron.strip():
        return Text("no schedule: it runs when triggered", style="dim")
    try:
        expr = schedule.validate_cron(cron.strip(), zone_name, now)
    except InvalidError as exc:
        return Text(f"✗ {exc.message}", style="bold red")
    fires = schedule.next_fires(expr, now, zone_name, 5)
    text = Text(f"✓ {cron_words(expr)}", style="green")
    if not tz.strip():
        text.append("  (shown in UTC; the daemon's default zone applies)", style="dim")
    for fire in fires:
        text.append(f"\n  {fire.astimezone(zone):%a %Y-%m-%d %H:%M:%S %Z}")
    return text


class NewWorkflowScreen(ModalScreen[dict[str, Any] | None]):
    """Dismissed with the created workflow, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "cancel"), Binding("ctrl+s", "create", "create")]

    def compose(self) -> ComposeResult:
        from nexus_core.kinds import all_kinds

        with VerticalScroll(id="form-box", classes="dialog"):
            yield Label("New workflow", classes="panel-title")
            yield Label("kind")
            yield Select([(k, k) for k in all_kinds()], value="noop", allow_blank=False, id="kind")
            for key, label, hint in FIELDS:
                yield Label(label)
                yield LineInput(placeholder=hint, id=key)
            yield Static(preview("", "", "", datetime.now(timezone.utc)), id="preview")
            yield Static("", id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("create (ctrl+s)", variant="primary", id="create")
                yield Button("cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    @on(Input.Changed, "#cron, #timezone, #at")
    def _schedule_changed(self, event: Input.Changed) -> None:
        values = {k: self.query_one(f"#{k}", Input).value for k in ("cron", "timezone", "at")}
        self.query_one("#preview", Static).update(preview(values["cron"], values["timezone"], values["at"],
                                                          datetime.now(timezone.utc)))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#create")
    def _create_pressed(self) -> None:
        self.action_create()

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": self.query_one("#kind", Select).value}
        for key, _, _ in FIELDS:
            value = self.query_one(f"#{key}", Input).value.strip()
            if not value:
                continue
            if key in ("retries",):
                try:
                    spec[key] = int(value)
                except ValueError:
                    raise InvalidError("retries must be a whole number", field=key) from None
            elif key == "timeout":
                try:
                    spec[key] = float(value)
                except ValueError:
                    raise InvalidError("timeout must be a number of seconds", field=key) from None
            elif key == "payload":
                try:
                    spec[key] = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise InvalidError(f"payload is not valid JSON: {exc.msg} at position {exc.pos}",
                                       field=key) from None
            else:
                spec[key] = value
        return spec

    @work(group="create", exclusive=True, exit_on_error=False)
    async def action_create(self) -> None:
        error = self.query_one("#form-error", Static)
        try:
            spec = self.spec()
            created = await self.app.link.call("workflows.create", spec)  # type: ignore[attr-defined]
        except NexusError as exc:
            error.update(Text(f"✗ {exc.message}", style="bold red"))
            if exc.field:
                try:
                    self.query_one(f"#{exc.field}").focus()
                except Exception:  # noqa: BLE001 - a field the form does not have
                    pass
            return
        self.dismiss(created)
