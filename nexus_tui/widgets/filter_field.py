"""A one-line filter box that redraws only itself.

Textual's Input re-lays out the whole screen on every keystroke (its virtual width follows the text);
with a 10,000-row table on screen that is most of a keystroke's cost. A filter needs no cursor
movement or selection: typing, backspace, ctrl+u to clear, enter to keep, escape to drop.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


class FilterField(Widget, can_focus=True):
    DEFAULT_CSS = """
    FilterField { height: 1; width: 1fr; background: $boost; padding: 0 1; }
    FilterField:focus { background: $accent 30%; }
    """

    value: reactive[str] = reactive("", init=False)

    class Changed(Message):
        def __init__(self, field: "FilterField", value: str) -> None:
            super().__init__()
            self.field = field
            self.value = value

        @property
        def control(self) -> "FilterField":
            return self.field

    class Submitted(Changed):
        """Enter: keep the filter and go back to the list."""

    def __init__(self, placeholder: str = "", **kw: Any):
        super().__init__(**kw)
        self.placeholder = placeholder

    def watch_value(self, value: str) -> None:
        self.post_message(self.Changed(self, value))

    def render(self) -> Text:
        text = Text("/ ", style="bold")
        if self.value:
            text.append(self.value)
        elif not self.has_focus:
            text.append(self.placeholder, style="dim")
        if self.has_focus:
            text.append(" ", style="reverse")
        if not self.value and self.has_focus:
            text.append(f" {self.placeholder}", style="dim")
        return text

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_key(self, event: events.Key) -> None:
        if event.key == "backspace":
            self.value = self.value[:-1]
        elif event.key == "ctrl+u":
            self.value = ""
        elif event.key == "enter":
            self.post_message(self.Submitted(self, self.value))
        elif event.is_printable and event.character:
            self.value += event.character
        else:
            return  # escape and the rest go to the screen
        event.stop()
        event.prevent_default()
