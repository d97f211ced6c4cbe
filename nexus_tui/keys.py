"""Which widget takes typed text (so a key bound on the screen must leave it to that widget)."""

from __future__ import annotations

from textual.widget import Widget
from textual.widgets import Input

from nexus_tui.widgets.filter_field import FilterField


def is_text_entry(widget: Widget | None) -> bool:
    return isinstance(widget, (Input, FilterField))
