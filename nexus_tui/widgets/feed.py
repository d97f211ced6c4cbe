"""The live activity feed: pushed events, newest first, coloured by level, filterable, scroll-stable."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.text import Text

from nexus_tui import format as fmt
from nexus_tui.widgets.vtable import Column, VirtualTable

MAX_EVENTS = 2000
Event = dict[str, Any]


class ActivityFeed(VirtualTable[Event]):
    """Keeps the newest MAX_EVENTS; an operator who scrolled back keeps looking at the same lines."""

    def __init__(self, **kw: Any):
        super().__init__([Column("at", "TIME", 8, sortable=False), Column("actor", "WHO", 10, sortable=False),
                          Column("message", "WHAT", None, min_width=20, sortable=False)],
                         self._event_cells, key=lambda e: e.get("id"), empty="No activity yet.", **kw)
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self.filter_text = ""
        self.rendered = 0  # events shown so far (for the benchmark)
        self.batches = 0

    def load(self, events: Iterable[Event]) -> None:
        """Replace the feed with these events, newest first."""
        self.events = deque(sorted(events, key=lambda e: e.get("id") or 0, reverse=True), maxlen=MAX_EVENTS)
        self._show(pinned=True)

    def add(self, batch: list[Event]) -> None:
        """New events (oldest first, as pushed)."""
        known = {e.get("id") for e in list(self.events)[: len(batch) + 5]}
        fresh = [e for e in batch if e.get("id") not in known]
        if not fresh:
            return
        pinned = self.cursor == 0 and round(self.scroll_y) == 0
        before = round(self.scroll_y)
        for event in fresh:
            self.events.appendleft(event)
        self.rendered += len(fresh)
        self.batches += 1
        shown = sum(1 for e in fresh if self._matches(e))
        self._show(pinned=pinned)
        if not pinned and shown:
            self.scroll_to(y=before + shown, animate=False, immediate=True)

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._show(pinned=True)

    def _matches(self, event: Event) -> bool:
        terms = self.filter_text.lower().split()
        if not terms:
            return True
        hay = f"{event.get('level', '')} {event.get('actor', '')} {event.get('action', '')} " \
              f"{event.get('target') or ''} {event.get('message', '')}".lower()
        return all(t in hay for t in terms)

    def _show(self, *, pinned: bool) -> None:
        rows = [e for e in self.events if self._matches(e)] if self.filter_text else list(self.events)
        if pinned:
            self.set_reactive(VirtualTable.cursor, 0)
        self.set_rows(rows, keep_cursor=not pinned)

    def _event_cells(self, e: Event) -> list[Text | str]:
        style = fmt.level(e.get("level", "info"))
        return [Text(fmt.clock_time(e.get("at")), style="dim"), Text(str(e.get("actor") or ""), style="cyan"),
                Text(e.get("message") or e.get("action") or "", style=style)]
