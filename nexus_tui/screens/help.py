"""`?`: the keys of the screen below and every command, generated from the bindings and the registry."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from nexus_core.commands.parse import usage
from nexus_core.commands.registry import all_commands

MODES = (("normal", "what your role allows"),
         ("god", "admins, for a limited time: internal ids, debug pane, multi-select (space) and bulk actions, "
                 "no approval prompts, read-only SQL with db:query"),
         ("ultra", "autonomous AI mode: not available yet"))


def _key(binding: Binding) -> str:
    names = {"question_mark": "?", "colon": ":", "slash": "/", "space": "space", "escape": "esc"}
    return ",".join(names.get(k, k) for k in binding.key.split(","))


def help_renderable(screen_bindings: list[Binding], app_bindings: list[Binding]) -> Group:
    keys = Table(box=None, show_header=False, pad_edge=False, title="Keys", title_justify="left",
                 title_style="bold")
    keys.add_column(style="bold cyan", no_wrap=True)
    keys.add_column()
    seen = set()
    for binding in [*screen_bindings, *app_bindings, Binding("ctrl+p", "", "command palette"),
                    Binding("tab", "", "next panel")]:
        if binding.description and binding.key not in seen:
            seen.add(binding.key)
            keys.add_row(_key(binding), binding.description)
    commands = Table(box=None, show_header=False, pad_edge=False, title="Commands (type : first)",
                     title_justify="left", title_style="bold")
    commands.add_column(style="bold cyan", no_wrap=True, max_width=60, overflow="fold")
    commands.add_column()
    for cmd in all_commands().values():
        commands.add_row(usage(cmd), cmd.help)
    modes = Table(box=None, show_header=False, pad_edge=False, title="Power modes (:mode:god, :mode:normal)",
                  title_justify="left", title_style="bold")
    modes.add_column(style="bold cyan", no_wrap=True)
    modes.add_column()
    for name, what in MODES:
        modes.add_row(name, what)
    return Group(keys, Text(""), modes, Text(""), commands)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "close")]

    def __init__(self, below: Any = None) -> None:
        super().__init__()
        self.below = below

    def compose(self) -> ComposeResult:
        screen_bindings = list(getattr(self.below, "BINDINGS", []) or [])
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Static(help_renderable(screen_bindings, list(self.app.BINDINGS)))  # type: ignore[arg-type]

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
