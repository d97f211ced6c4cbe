"""The `:` command line: every registry command, tab completion, history, output in a scrollable pane."""

from __future__ import annotations

import json
import os
from typing import Any

from rich.console import RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, RichLog, Static

from nexus_core.commands.parse import parse_line, usage
from nexus_core.commands.registry import Command, all_commands
from nexus_core.errors import NexusError
from nexus_tui.widgets.line_input import LineInput

LOCAL = {"help": "list the commands", "clear": "clear this pane", "quit": "leave Nexus"}
MAX_LOG = 300


class CommandInput(LineInput):
    """The line itself: tab completes, up and down walk the history, page keys scroll the output."""

    BINDINGS = [
        Binding("tab", "complete", "complete", show=False),
        Binding("up", "history(-1)", "older", show=False),
        Binding("down", "history(1)", "newer", show=False),
        Binding("pageup", "scroll_output(-1)", show=False),
        Binding("pagedown", "scroll_output(1)", show=False),
    ]

    async def action_submit(self) -> None:
        # Emptied now, not when the screen gets the message: keys typed after the enter start the next line.
        line, self.value = self.value, ""
        self.post_message(self.Submitted(self, line))

    def action_complete(self) -> None:
        self.screen.complete()  # type: ignore[attr-defined]

    def action_history(self, step: int) -> None:
        history = self.app.history  # type: ignore[attr-defined]
        line = history.older() if step < 0 else history.newer()
        if line is not None:
            self.value = line
            self.cursor_position = len(line)

    def action_scroll_output(self, step: int) -> None:
        log = self.screen.query_one(RichLog)
        log.scroll_page_up() if step < 0 else log.scroll_page_down()


class CommandScreen(ModalScreen[None]):
    """Opens at the bottom over the current screen; escape closes it, its output stays for next time."""

    BINDINGS = [Binding("escape", "close", "close")]

    def __init__(self, text: str = ""):
        super().__init__()
        self.initial = text

    def compose(self) -> ComposeResult:
        with Vertical(id="command-box"):
            yield RichLog(id="command-output", wrap=False, markup=False, highlight=False, max_lines=5000)
            yield Static(Text("tab completes · ↑↓ history · help lists commands · esc closes", style="dim"),
                         id="command-hint")
            yield CommandInput(value=self.initial, placeholder="command, e.g. auto:list or auto:trigger NAME",
                               id="command-input")

    def on_mount(self) -> None:
        log = self.query_one(RichLog)
        for item in self.app.command_log:  # type: ignore[attr-defined]
            log.write(item)
        field = self.query_one(CommandInput)
        field.cursor_blink = self.app.blink  # type: ignore[attr-defined]
        field.focus()
        field.cursor_position = len(self.initial)

    def action_close(self) -> None:
        self.dismiss(None)

    def write(self, item: RenderableType) -> None:
        log: list[Any] = self.app.command_log  # type: ignore[attr-defined]
        log.append(item)
        del log[:-MAX_LOG]
        self.query_one(RichLog).write(item)

    @on(Input.Submitted, "#command-input")
    def _submitted(self, event: Input.Submitted) -> None:
        self.submit_line(event.value)

    def submit_line(self, line: str) -> None:
        line = line.strip().removeprefix(":").strip()
        if not line:
            return
        self.app.history.add(line)  # type: ignore[attr-defined]
        self.write(Text(f"› {line}", style="bold cyan"))
        word = line.split()[0]
        if word in LOCAL:
            self._local(word)
            return
        try:
            cmd, args, as_json = parse_line(line)
            params = cmd.rpc_params(args)
        except NexusError as exc:
            self.write(Text(exc.message, style="red"))
            return
        self.run_command(cmd, params, as_json)

    def _local(self, word: str) -> None:
        if word == "clear":
            self.app.command_log.clear()  # type: ignore[attr-defined]
            self.query_one(RichLog).clear()
        elif word == "quit":
            self.app.exit()
        else:
            self.write(help_text())

    @work(group="command", exit_on_error=False)
    async def run_command(self, cmd: Command, params: dict[str, Any], as_json: bool) -> None:
        app: Any = self.app
        timeout = float(params.get("wait_timeout") or 3600) + 10 if params.get("wait") else 60.0
        try:
            answer = await app.link.call(cmd.method, params, timeout=timeout)
        except NexusError as exc:
            self.write(Text(f"{exc.message}", style="bold red"))
            return
        if cmd.method.startswith("mode."):
            app.link.set_mode(answer)
        if cmd.method == "notifications.read":
            app.refresh_unread()
        if as_json or cmd.render is None:
            self.write(Syntax(json.dumps(answer, indent=2, default=str, ensure_ascii=False), "json",
                              theme="ansi_dark", background_color="default"))
        else:
            self.write(cmd.render(answer))
        code = cmd.outcome(answer) if cmd.outcome else 0
        if code:
            self.write(Text(f"{cmd.name} reported a failure (exit code {code} in a shell)", style="yellow"))

    # -- completion -----------------------------------------------------------------------------

    def complete(self) -> None:
        field = self.query_one(CommandInput)
        before = field.value[: field.cursor_position]
        after = field.value[field.cursor_position:]
        head, _, word = before.rpartition(" ")
        choices = self._candidates(head.split() if head else [], word)
        if not choices:
            return
        common = os.path.commonprefix(choices)
        if len(choices) == 1:
            common += " "
        elif len(common) <= len(word):
            self.write(Text("  ".join(choices[:60]) + ("  …" if len(choices) > 60 else ""), style="dim"))
            return
        new = (head + " " if head else "") + common
        field.value = new + after
        field.cursor_position = len(new)

    def _candidates(self, words: list[str], word: str) -> list[str]:
        commands = all_commands()
        if not words:
            return sorted(n for n in [*commands, *LOCAL] if n.startswith(word))
        cmd = commands.get(words[0])
        if cmd is None:
            return []
        if word.startswith("-"):
            return sorted(o for o in ["--json", *(p.option for p in cmd.params if not p.positional)]
                          if o.startswith(word))
        previous = words[-1] if len(words) > 1 else ""
        option = next((p for p in cmd.params if not p.positional and p.option == previous and p.type is not bool),
                      None)
        if option is not None:
            return self._values(option.complete, option.choices, word)
        taken = sum(1 for i, w in enumerate(words[1:], 1) if not w.startswith("-")
                    and not _is_option_value(cmd, words, i))
        positionals = [p for p in cmd.params if p.positional]
        if taken < len(positionals):
            return self._values(positionals[taken].complete, positionals[taken].choices, word)
        return []

    def _values(self, complete: str | None, choices: tuple[str, ...], word: str) -> list[str]:
        if choices:
            return [c for c in choices if c.startswith(word)]
        if complete == "workflow":
            names: list[str] = self.app.workflow_names  # type: ignore[attr-defined]
            return sorted(n for n in names if n.startswith(word))
        if complete == "kind":
            from nexus_core.kinds import all_kinds

            return [k for k in all_kinds() if k.startswith(word)]
        return []


def _is_option_value(cmd: Command, words: list[str], i: int) -> bool:
    previous = words[i - 1]
    return any(p.option == previous and p.type is not bool for p in cmd.params if not p.positional)


def help_text() -> RenderableType:
    from rich.table import Table

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for cmd in all_commands().values():
        table.add_row(usage(cmd), cmd.help)
    for name, what in LOCAL.items():
        table.add_row(name, what)
    return table
