"""A table that renders only the lines on screen, so 10,000 rows filter and scroll without delay."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

Row = TypeVar("Row")


@dataclass(frozen=True)
class Column:
    """A column: fixed `width`, or flexible (`width=None`) sharing what is left, at least `min_width`."""

    key: str
    label: str
    width: int | None = None
    min_width: int = 6
    justify: str = "left"
    sortable: bool = True


class VirtualTable(ScrollView, Generic[Row], can_focus=True):
    """Rows of any type, turned into cells by `cells(row)`; a cursor, an optional multi-selection, sorting."""

    COMPONENT_CLASSES = {"vtable--header", "vtable--cursor", "vtable--selected", "vtable--empty"}
    DEFAULT_CSS = """
    VirtualTable { background: $surface; overflow-x: hidden; }
    VirtualTable > .vtable--header { text-style: bold; color: $text-accent; background: $panel; }
    VirtualTable > .vtable--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    VirtualTable:blur > .vtable--cursor { background: $block-cursor-blurred-background; }
    VirtualTable > .vtable--selected { background: $accent 30%; }
    VirtualTable > .vtable--empty { color: $text-muted; }
    """
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "up", show=False),
        Binding("down,j", "cursor(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home,g", "edge(0)", "first", show=False),
        Binding("end,G", "edge(1)", "last", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True, init=False)

    class RowMessage(Message):
        def __init__(self, table: "VirtualTable[Any]", row: Any) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> "VirtualTable[Any]":
            return self.table

    class Highlighted(RowMessage):
        """The cursor moved to another row."""

    class Selected(RowMessage):
        """Enter (or a double click) on a row."""

    def __init__(self, columns: Sequence[Column], cells: Callable[[Row], Sequence[Text | str]],
                 key: Callable[[Row], Any], *, empty: str = "nothing to show", show_header: bool = True,
                 show_cursor: bool = True, name: str | None = None, id: str | None = None,
                 classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self.columns = list(columns)
        self._cells = cells
        self._key = key
        self.empty_text = empty
        self.show_header = show_header
        self.show_cursor = show_cursor
        self.rows: list[Row] = []
        self.selected: set[Any] = set()
        self.sort_key: str | None = None
        self.sort_reverse = False
        self._widths: list[int] = []
        # (key, id(row), width, cursor, selected, scroll x) -> (row, strip); the row is kept so its id is not
        # reused while the entry lives.
        self._cache: dict[tuple[Any, int, int, bool, bool, int], tuple[Row, Strip]] = {}

    # -- data ---------------------------------------------------------------------------------

    @property
    def header_height(self) -> int:
        return 1 if self.show_header else 0

    def set_rows(self, rows: Sequence[Row], *, keep_cursor: bool = True) -> None:
        """Show these rows; the cursor stays on the row with the same key when it is still there."""
        current = self.current_key if keep_cursor else None
        self.rows = list(rows)
        if current is not None:
            for i, row in enumerate(self.rows):
                if self._key(row) == current:
                    self.set_reactive(VirtualTable.cursor, i)
                    break
        self.set_reactive(VirtualTable.cursor, max(0, min(self.cursor, len(self.rows) - 1)))
        self._update_size()
        self.repaint()
        self._scroll_to_cursor()

    def repaint(self) -> None:
        """Draw the lines again, not the scrollbars (which change only with the number of rows)."""
        self.refresh(self.size.region)

    def invalidate(self) -> None:
        """Cells changed in place (e.g. `now` moved on): draw again."""
        self._cache.clear()
        self.repaint()

    @property
    def current(self) -> Row | None:
        if 0 <= self.cursor < len(self.rows):
            return self.rows[self.cursor]
        return None

    @property
    def current_key(self) -> Any:
        row = self.current
        return self._key(row) if row is not None else None

    def toggle_selected(self) -> None:
        key = self.current_key
        if key is None:
            return
        self.selected.symmetric_difference_update({key})
        self.repaint()

    def clear_selection(self) -> None:
        if self.selected:
            self.selected.clear()
            self.repaint()

    # -- geometry -------------------------------------------------------------------------------

    def _layout(self, width: int) -> list[int]:
        fixed = sum(c.width or 0 for c in self.columns) + len(self.columns) - 1
        flexible = [c for c in self.columns if c.width is None]
        spare = max(0, width - fixed)
        widths = []
        for c in self.columns:
            if c.width is not None:
                widths.append(c.width)
            else:
                widths.append(max(c.min_width, spare // max(1, len(flexible))))
        return widths

    def _update_size(self) -> None:
        width = self.scrollable_content_region.width or self.size.width or 80
        self._widths = self._layout(width)
        total = sum(self._widths) + len(self._widths) - 1
        new = Size(total, len(self.rows) + self.header_height)
        old = self.virtual_size
        height = self.size.height
        if new.width == old.width and new != old and height and (old.height > height) == (new.height > height):
            # Only the number of rows changed and the scrollbar stays (or stays away): update it in place.
            # Assigning virtual_size re-lays out the whole screen, the larger part of a filter keystroke.
            self.set_reactive(VirtualTable.virtual_size, new)
            self._scroll_update(new)
            self.repaint()
        else:
            self.virtual_size = new

    def on_resize(self, event: events.Resize) -> None:
        self._cache.clear()
        self._update_size()

    @property
    def page_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - self.header_height)

    # -- drawing --------------------------------------------------------------------------------

    def _line(self, cells: Sequence[Text | str], style: Style) -> Strip:
        segments: list[Segment] = []
        for i, (cell, width) in enumerate(zip(cells, self._widths)):
            text = cell.copy() if isinstance(cell, Text) else Text(str(cell))
            text.no_wrap = True
            if self.columns[i].justify == "right":
                text.truncate(width, overflow="ellipsis")
                text.pad_left(width - text.cell_len)
            else:
                text.truncate(width, overflow="ellipsis", pad=True)
            text.stylize(style)
            segments.extend(text.render(self.app.console))
            if i < len(self._widths) - 1:
                segments.append(Segment(" ", style))
        return Strip(segments)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        if not self._widths:
            self._update_size()
        if self.show_header and y == 0:
            style = base + self.get_component_rich_style("vtable--header")
            labels = []
            for c in self.columns:
                mark = ""
                if c.key == self.sort_key:
                    mark = " ▼" if self.sort_reverse else " ▲"
                labels.append(Text(c.label + mark))
            return self._line(labels, style).crop_extend(scroll_x, scroll_x + width, style)
        index = y - self.header_height + scroll_y
        if index >= len(self.rows):
            if not self.rows and index == 0:
                text = Text(self.empty_text, style=base + self.get_component_rich_style("vtable--empty"))
                return Strip(text.render(self.app.console)).crop_extend(0, width, base)
            return Strip.blank(width, base)
        row = self.rows[index]
        key = self._key(row)
        is_cursor = self.show_cursor and index == self.cursor and self.has_focus_within_screen
        is_selected = key in self.selected
        cache_key = (key, id(row), width, is_cursor, is_selected, scroll_x)
        hit = self._cache.get(cache_key)
        if hit is not None:
            return hit[1]  # the very Strip drawn before: Textual then reuses what it made of it
        style = base
        if is_selected:
            style = style + self.get_component_rich_style("vtable--selected")
        if is_cursor:
            style = style + self.get_component_rich_style("vtable--cursor")
        strip = self._line(self._cells(row), style).simplify().crop_extend(scroll_x, scroll_x + width, base)
        if len(self._cache) > 2000:
            self._cache.clear()
        self._cache[cache_key] = (row, strip)
        return strip

    @property
    def has_focus_within_screen(self) -> bool:
        """Draw the cursor when focused, and also when nothing else on the screen holds focus."""
        return self.has_focus or self.screen.focused is None or not self.screen.focused.can_focus

    def on_focus(self) -> None:
        self.repaint()

    def on_blur(self) -> None:
        self.repaint()

    # -- moving ---------------------------------------------------------------------------------

    def watch_cursor(self, old: int, new: int) -> None:
        self.repaint()
        self._scroll_to_cursor()
        if old != new or new == 0:
            self.post_message(self.Highlighted(self, self.current))

    def _scroll_to_cursor(self) -> None:
        top = round(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + self.page_rows:
            self.scroll_to(y=self.cursor - self.page_rows + 1, animate=False, immediate=True)

    def move_cursor(self, to: int) -> None:
        if self.rows:
            self.cursor = max(0, min(len(self.rows) - 1, to))

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor + direction * self.page_rows)

    def action_edge(self, end: int) -> None:
        self.move_cursor(len(self.rows) - 1 if end else 0)

    def key_enter(self) -> None:
        if self.current is not None:
            self.post_message(self.Selected(self, self.current))

    def on_click(self, event: events.Click) -> None:
        if self.show_header and event.y == 0:
            x = event.x + round(self.scroll_x)
            for column, width in zip(self.columns, self._widths):
                if x < width + 1:
                    if column.sortable:
                        self.sort_by(column.key)
                    return
                x -= width + 1
            return
        index = event.y - self.header_height + round(self.scroll_y)
        if 0 <= index < len(self.rows):
            self.focus()
            self.move_cursor(index)
            if event.chain >= 2:
                self.post_message(self.Selected(self, self.rows[index]))

    # -- sorting --------------------------------------------------------------------------------

    class SortChanged(Message):
        """The operator picked another sort column or direction."""

        def __init__(self, table: "VirtualTable[Any]") -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> "VirtualTable[Any]":
            return self.table

    def sort_by(self, key: str) -> None:
        if self.sort_key == key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, False
        self._cache.clear()
        self.repaint()
        self.post_message(self.SortChanged(self))

    def next_sort(self) -> None:
        keys = [c.key for c in self.columns if c.sortable]
        if not keys:
            return
        at = keys.index(self.sort_key) if self.sort_key in keys else -1
        self.sort_key, self.sort_reverse = keys[(at + 1) % len(keys)], False
        self._cache.clear()
        self.repaint()
        self.post_message(self.SortChanged(self))
