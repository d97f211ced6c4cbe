"""The top line of every screen: connection, version, who you are, power mode, unread count, clock."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widget import Widget

from nexus_tui.format import parse_iso, span

if TYPE_CHECKING:
    from nexus_tui.app import NexusApp


class StatusHeader(Widget):
    """Redrawn every second and whenever the link, the mode or the unread count change."""

    DEFAULT_CSS = """
    StatusHeader { height: 1; width: 1fr; background: $panel; color: $text; padding: 0 1; }
    """

    def on_mount(self) -> None:
        app: NexusApp = self.app  # type: ignore[assignment]
        app.link.state_changed.subscribe(self, lambda _: self.refresh_line())
        app.link.mode.subscribe(self, lambda _: self.refresh_line())
        app.unread_changed.subscribe(self, lambda _: self.refresh_line())
        self.set_interval(1.0, self.refresh_line)
        self.refresh_line()

    def refresh_line(self) -> None:
        self.refresh()

    def render(self) -> Text:
        app: NexusApp = self.app  # type: ignore[assignment]
        return header_text(app.link.state, app.mode_info, app.unread, app.now(), self.size.width or 80)


def header_text(state: Any, mode: dict[str, Any], unread: int, now: Any, width: int) -> Text:
    hello = state.hello or {}
    text = Text()
    if state.status == "connected":
        text.append("● connected", style="bold green")
    elif state.status == "starting":
        text.append("● starting the daemon", style="bold yellow")
    else:
        retry = max(0, (state.retry_at or time.time()) - time.time())
        word = "reconnecting" if state.generation else "unreachable"
        style = "bold yellow" if state.generation else "bold red"
        text.append(f"● {word}", style=style)
        text.append(f" (retry in {retry:.0f}s)", style=style)
    text.append("  Nexus", style="bold")
    if hello.get("version"):
        text.append(f" {hello['version']}", style="dim")
    op = hello.get("operator") or {}
    if op:
        text.append(f"  {op.get('name')}", style="bold")
        text.append(f" ({op.get('role')})", style="dim")
        text.append(f" @ {op.get('organization')}")
    current = (mode or {}).get("mode", "normal")
    if current == "god":
        expires = parse_iso(mode.get("expires_at"))
        left = f" {span((expires - now).total_seconds())} left" if expires else ""
        text.append(f"  ⚡ GOD MODE{left}", style="bold black on bright_yellow")
    else:
        text.append(f"  mode {current}", style="dim")
    text.append("  ")
    text.append(f"✉ {unread}", style="bold red" if unread else "dim")
    clock = now.astimezone().strftime("%H:%M:%S")
    pad = width - text.cell_len - len(clock)
    if pad > 0:
        text.append(" " * pad)
    else:
        text.append("  ")
    text.append(clock, style="bold")
    return text
