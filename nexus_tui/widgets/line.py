"""One line of text that redraws without a layout pass (a Label's update re-lays out the whole screen)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget


class Line(Widget):
    DEFAULT_CSS = "Line { height: 1; width: 1fr; }"

    def __init__(self, text: str | Text = "", **kw: Any):
        super().__init__(**kw)
        self.text = Text(text) if isinstance(text, str) else text

    def set(self, text: str | Text) -> None:
        self.text = Text(text) if isinstance(text, str) else text
        self.refresh()

    def render(self) -> Text:
        return self.text
