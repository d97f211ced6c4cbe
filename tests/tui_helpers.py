"""Helpers for driving the TUI under Pilot (not a test module)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console


async def until(pilot: Any, predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Let the app run until `predicate()` is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await pilot.pause(0.05)


def plain(renderable: Any, width: int = 200) -> str:
    """What a renderable shows, as text."""
    console = Console(width=width, record=True, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.export_text()


def command_output(app: Any) -> str:
    return "\n".join(plain(item) for item in app.command_log)


async def type_command(pilot: Any, line: str) -> None:
    """Open the `:` line, type `line` and press enter."""
    await pilot.press("colon")
    await until(pilot, lambda: pilot.app.screen.__class__.__name__ == "CommandScreen", "the command line")
    field = pilot.app.screen.query_one("#command-input")
    field.value = line
    field.cursor_position = len(line)
    await pilot.press("enter")


NAMED_KEYS = {"tab": "\t", "enter": "\r", "backspace": "\x7f", "escape": "\x1b", "ctrl+a": "\x01",
              "ctrl+k": "\x0b", "ctrl+s": "\x13"}


def burst(app: Any, *parts: str) -> None:
    """Send keys the way a terminal delivers a fast burst: all queued at once, none waited for.

    A part is a key name from NAMED_KEYS or text typed character by character.
    """
    from textual import events
    from textual.keys import _character_to_key

    for part in parts:
        if part in NAMED_KEYS:
            app.post_message(events.Key(part, NAMED_KEYS[part]))
            continue
        for char in part:
            key = char if char.isalnum() else _character_to_key(char)
            app.post_message(events.Key(key, char))
