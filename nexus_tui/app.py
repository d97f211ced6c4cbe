"""The Nexus TUI: the App holds the daemon link, the power mode and the unread count; screens do the rest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from textual import events
from textual.actions import SkipAction
from textual.app import App
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.signal import Signal
from textual.timer import Timer

from nexus_core.errors import NexusError
from nexus_tui.history import CommandHistory
from nexus_tui.keys import is_text_entry
from nexus_tui.link import DaemonLink, LinkState
from nexus_tui.palette import RegistryCommands


class NexusApp(App[int]):
    """`nexus` with no arguments."""

    CSS_PATH = "app.tcss"
    TITLE = "Nexus"
    COMMANDS = App.COMMANDS | {RegistryCommands}
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        # priority: decided when the key arrives, so the keys typed right after it are kept for the line
        Binding("colon", "command_line", "command", id="command-line", priority=True),
        Binding("question_mark", "help", "help", id="help"),
        Binding("N", "notifications", "notifications", id="notifications"),
        Binding("q", "quit", "quit", id="quit"),
    ]

    def __init__(self, socket_path: Path, *, now: Callable[[], datetime] | None = None, notice: str | None = None,
                 history_path: Path | None = None, blink: bool = True, starter: Callable[[], int] | None = None):
        super().__init__()
        self.link = DaemonLink(self, socket_path, starter)
        self._now = now
        self._notice = notice
        self.blink = blink
        self.history = CommandHistory(history_path)
        self.unread = 0
        self.unread_changed: Signal[int] = Signal(self, "unread")
        self._was_god = False
        self.workflow_names: list[str] = []
        self.command_log: list[Any] = []
        self._held: list[events.Key] | None = None  # keys kept for a text field that is opening
        self._holding = False
        self._hold_timer: Timer | None = None

    # -- shared state -------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._now() if self._now is not None else datetime.now(timezone.utc)

    @property
    def mode_info(self) -> dict[str, Any]:
        return self.link.mode_info

    @property
    def god(self) -> bool:
        return self.mode_info.get("mode") == "god"

    @property
    def operator(self) -> dict[str, Any]:
        return self.link.state.hello.get("operator") or {}

    def report(self, exc: NexusError, title: str = "failed") -> None:
        """An error as a toast a person can act on; never a traceback."""
        self.notify(exc.message, title=title, severity="error", timeout=8)

    # -- lifecycle ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        from nexus_tui.screens.dashboard import DashboardScreen

        self.link.state_changed.subscribe(self, self._link_changed)
        self.link.mode.subscribe(self, self._mode_changed)
        self.link.notifications.subscribe(self, self._notified)
        self.run_worker(self.link.run(), name="daemon-link", group="link", exit_on_error=False)
        self.push_screen(DashboardScreen())
        if self._notice:
            self.notify(self._notice, title="daemon", timeout=10)

    def _link_changed(self, state: LinkState) -> None:
        if state.status == "connected":
            self.run_worker(self._load_unread(), group="unread", exclusive=True, exit_on_error=False)
            if state.generation > 1:
                self.notify("connected to the daemon again", title="daemon", timeout=4)

    async def _load_unread(self) -> None:
        try:
            answer = await self.link.call("notifications.list", {"unread_only": True, "limit": 1})
        except NexusError:
            return
        self.set_unread(int(answer.get("unread", 0)))

    def set_unread(self, count: int) -> None:
        self.unread = max(0, count)
        self.unread_changed.publish(self.unread)

    def refresh_unread(self) -> None:
        self.run_worker(self._load_unread(), group="unread", exclusive=True, exit_on_error=False)

    def _mode_changed(self, info: dict[str, Any]) -> None:
        was, self._was_god = self._was_god, self.god
        self.set_class(self.god, "-god")
        if was and not self.god:
            self.notify("god mode ended", title="mode", timeout=5)

    def _notified(self, note: dict[str, Any]) -> None:
        self.set_unread(self.unread + 1)
        severity = "error" if note.get("level") == "error" else "warning"
        self.notify(note.get("body") or "", title=note.get("title") or "notification", severity=severity, timeout=10)

    # -- keys typed ahead ------------------------------------------------------------------------
    # A key that opens a text field (`:`, `/`, `n`) is followed at once by what is meant for that field:
    # `:auto:list⏎` typed fast, pasted, or sent by tmux arrives in one burst. The field takes focus a
    # moment later, and without this the burst's keys would reach what had focus before: the table,
    # where `d` asks to delete and `t` triggers.

    def hold_keys(self) -> None:
        """Keep keys from now on until a text field takes focus (at most HOLD_S), then give them to it."""
        if self._held is None:
            self._held = []
        self._holding = True
        if self._hold_timer is not None:
            self._hold_timer.stop()
        self._hold_timer = self.set_timer(HOLD_S, self.release_keys)

    def release_keys(self) -> None:
        if not self._holding:
            return
        self._holding = False
        if self._hold_timer is not None:
            self._hold_timer.stop()
            self._hold_timer = None
        self.call_later(self._replay_keys)

    async def _replay_keys(self) -> None:
        # Keys that arrive while these are replayed join the end of the list, so the order is kept.
        while self._held and not self._holding:
            await super().on_event(self._held.pop(0))
        if not self._holding:
            self._held = None

    async def on_event(self, event: events.Event) -> None:
        if self._held is not None and isinstance(event, events.Key) and not event.is_forwarded:
            self._held.append(event)
            return
        await super().on_event(event)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if is_text_entry(event.widget):
            self.release_keys()

    # -- actions ------------------------------------------------------------------------------

    def action_command_line(self, text: str = "") -> None:
        if isinstance(self.screen, ModalScreen) or is_text_entry(self.focused):
            raise SkipAction()  # a `:` typed into a field, or a dialog is open
        self.open_command_line(text)

    def open_command_line(self, text: str = "") -> None:
        from nexus_tui.screens.command import CommandScreen

        if not isinstance(self.screen, CommandScreen):
            self.hold_keys()
            self.push_screen(CommandScreen(text))

    def action_help(self) -> None:
        from nexus_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_notifications(self) -> None:
        from nexus_tui.screens.notifications import NotificationsScreen

        if not isinstance(self.screen, NotificationsScreen):
            self.push_screen(NotificationsScreen())


#: Longest wait for the field the held keys are for.
HOLD_S = 1.0


def run(socket_path: Path, *, notice: str | None = None, starter: Callable[[], int] | None = None) -> int:
    """Run the TUI until the operator quits; returns the exit code. `starter` starts a background daemon
    (the embedded default), so one that dies while the TUI is open is started again."""
    app = NexusApp(socket_path, notice=notice, starter=starter)
    app.run()
    return app.return_code or 0
