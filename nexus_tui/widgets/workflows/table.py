"""The workflows table: every workflow of the organization, filtered as you type, sorted, live."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from rich.text import Text

from nexus_tui import format as fmt
from nexus_tui.widgets.vtable import Column, VirtualTable

Workflow = dict[str, Any]

# By priority: at a narrow width the last ones are left out.
COLUMNS = {
    "name": Column("name", "NAME", None, min_width=14),
    "status": Column("status", "STATUS", 9),
    "next": Column("next", "NEXT FIRE", 10),
    "last": Column("last", "LAST RUN", 19),
    "schedule": Column("schedule", "SCHEDULE", None, min_width=12),
    "kind": Column("kind", "KIND", 8),
    "success": Column("success", "OK %", 5, justify="right"),
    "tz": Column("tz", "ZONE", 16),  # before CRON: SCHEDULE says the cron in words, nothing else says the zone
    "cron": Column("cron", "CRON", 15),
    "id": Column("id", "ID", 32, sortable=False),
}
ORDER = ("id", "name", "kind", "status", "schedule", "cron", "tz", "next", "last", "success")
_FAR = "\uffff"


def _sort_value(key: str) -> Callable[[Workflow], Any]:
    if key == "next":
        return lambda w: w.get("next_fire_at") or _FAR
    if key == "last":
        return lambda w: w.get("last_run_at") or ""
    if key == "success":
        return lambda w: -1.0 if w.get("success_rate") is None else w["success_rate"]
    if key == "schedule":
        return lambda w: fmt.schedule_words(w)
    if key == "tz":
        return lambda w: w.get("timezone") or ""
    return lambda w: str(w.get(key) or "")


class WorkflowTable(VirtualTable[Workflow]):
    """Holds the workflows by name; `show()` applies the filter and the sort."""

    def __init__(self, now: Callable[[], datetime], **kw: Any):
        super().__init__([COLUMNS[k] for k in ORDER if k != "id"], self._row_cells, key=lambda w: w["name"],
                         empty="No workflows yet: press n to create one, or `:auto:apply FILE`.", **kw)
        self.now = now
        self.by_name: dict[str, Workflow] = {}
        self._search: dict[str, str] = {}
        self.filter_text = ""
        self.show_ids = False
        self.sort_key = "name"
        # Every workflow in the current sort order, and the last filter's result: typing one more
        # character only narrows that result, so a keystroke costs a scan of what is shown, never a sort.
        self._ordered: list[tuple[str, Workflow]] | None = None  # (search key, workflow)
        self._last: tuple[list[str], list[tuple[str, Workflow]]] | None = None

    # -- data -----------------------------------------------------------------------------------

    def load(self, workflows: Iterable[Workflow]) -> None:
        """Replace every workflow."""
        self.by_name = {w["name"]: w for w in workflows}
        self._search = {n: _search_key(w) for n, w in self.by_name.items()}
        self._ordered = self._last = None
        self.show()

    def update_some(self, workflows: Iterable[Workflow], gone: Iterable[str] = ()) -> None:
        """Replace or add these workflows and drop the `gone` ones, keeping the rest."""
        for w in workflows:
            self.by_name[w["name"]] = w
            self._search[w["name"]] = _search_key(w)
        for name in gone:
            self.by_name.pop(name, None)
            self._search.pop(name, None)
            self.selected.discard(name)
        self._ordered = self._last = None
        self.show()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.show(keep_cursor=True)

    def show(self, *, keep_cursor: bool = True) -> None:
        if self._ordered is None:
            ordered = sorted(self.by_name.values(), key=_sort_value(self.sort_key or "name"),
                             reverse=self.sort_reverse)
            self._ordered = [(self._search[w["name"]], w) for w in ordered]
            self._last = None
        terms = self.filter_text.lower().split()
        if not terms:
            pairs = self._ordered
        else:
            pool = self._ordered
            if self._last is not None and _narrows(self._last[0], terms):
                pool = self._last[1]
            if len(terms) == 1:
                term = terms[0]
                pairs = [p for p in pool if term in p[0]]
            else:
                pairs = [p for p in pool if all(t in p[0] for t in terms)]
        self._last = (terms, pairs)
        self.set_rows([w for _, w in pairs], keep_cursor=keep_cursor)

    def resort(self) -> None:
        self._ordered = None
        self.show()

    def on_virtual_table_sort_changed(self, event: VirtualTable.SortChanged) -> None:
        event.stop()
        self.resort()

    # -- layout ---------------------------------------------------------------------------------

    def set_show_ids(self, show: bool) -> None:
        self.show_ids = show
        self._choose_columns()

    def on_resize(self, event: Any) -> None:
        self._choose_columns()
        super().on_resize(event)

    def _choose_columns(self) -> None:
        width = self.scrollable_content_region.width or self.size.width or 80
        wanted = [k for k in COLUMNS if k != "id" or self.show_ids]
        if self.show_ids:
            wanted.remove("id")
            wanted.insert(3, "id")
        keep: list[str] = []
        used = 0
        for key in wanted:
            col = COLUMNS[key]
            need = (col.width or col.min_width) + (1 if keep else 0)
            if key in ("name", "status") or used + need <= width:
                keep.append(key)
                used += need
        self.columns = [COLUMNS[k] for k in ORDER if k in keep]
        self._cache.clear()
        self._update_size()
        self.repaint()

    # -- cells ----------------------------------------------------------------------------------

    def _row_cells(self, w: Workflow) -> list[Text | str]:
        now = self.now()
        out: list[Text | str] = []
        for col in self.columns:
            key = col.key
            if key == "name":
                mark = "● " if w["name"] in self.selected else ""
                out.append(Text(mark + w["name"], style="bold" if w.get("status") == "active" else ""))
            elif key == "status":
                out.append(fmt.status(w.get("status")))
            elif key == "schedule":
                out.append(fmt.schedule_words(w))
            elif key == "cron":
                out.append(Text(w.get("cron") or ("--at" if w.get("run_at") else "—"), style="dim"))
            elif key == "tz":
                scheduled = w.get("cron") or w.get("run_at")
                out.append(Text((w.get("timezone") or "") if scheduled else "—", style="dim"))
            elif key == "next":
                out.append(fmt.relative(w.get("next_fire_at"), now) if w.get("next_fire_at") else Text("—", "dim"))
            elif key == "last":
                out.append(fmt.last_run(w, now))
            elif key == "success":
                out.append(_rate_text(w))
            else:
                out.append(str(w.get(key) or ""))
        return out


def _narrows(before: list[str], now: list[str]) -> bool:
    """Whether every row matching `now` also matched `before` (each old term is within a new one)."""
    return bool(before) and all(any(old in new for new in now) for old in before)


def _search_key(w: Workflow) -> str:
    return f"{w['name']} {w.get('kind', '')} {w.get('status', '')}".lower()


def _rate_text(w: Workflow) -> Text:
    rate = w.get("success_rate")
    if rate is None:
        return Text("—", style="dim")
    style = "green" if rate >= 0.99 else ("yellow" if rate >= 0.9 else "red")
    return Text(fmt.success_rate(w), style=style)
