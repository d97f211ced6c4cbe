"""The system panel: database, Redis, workers, queue depths, runs per minute, failures in the last hour."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static


def _ok(part: dict[str, Any] | None) -> Text:
    if not part:
        return Text("?", style="dim")
    if part.get("ok"):
        return Text("ok", style="bold green")
    return Text(f"DOWN {part.get('error', '')}", style="bold red")


def health_table(h: dict[str, Any] | None, offline: bool = False) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True, min_width=9)
    grid.add_column(overflow="ellipsis", no_wrap=True)
    if offline:
        grid.add_row("status", Text("unknown: no answer from the daemon", style="bold red"))
        return grid
    if not h:
        grid.add_row("status", Text("waiting for the daemon…", style="dim"))
        return grid
    db, redis, workers = h.get("database") or {}, h.get("redis") or {}, h.get("workers") or {}
    overall = Text("healthy", style="bold green") if h.get("ok") else Text("DEGRADED", style="bold red")
    grid.add_row("overall", Text.assemble(overall, (f"  up {h.get('uptime_s', 0) / 3600:.1f}h", "dim")))
    latency = f" {db['latency_ms']:.1f} ms" if db.get("latency_ms") is not None else ""
    grid.add_row("database", Text.assemble(_ok(db), f" {db.get('backend', '')}{latency}"))
    grid.add_row("redis", Text.assemble(_ok(redis), " embedded" if redis.get("embedded") else " external"))
    grid.add_row("workers", f"{workers.get('processes', 0)} process(es), {workers.get('threads', 0)} threads here")
    queues = h.get("queues") or {}
    depth = Text()
    for i, (name, d) in enumerate(queues.items()):
        if i:
            depth.append(" · ", style="dim")
        ready = d.get("ready", 0)
        depth.append(f"{name} ", style="dim")
        depth.append(str(ready), style="bold yellow" if ready else "")
        if d.get("delayed"):
            depth.append(f"+{d['delayed']}", style="dim")
    grid.add_row("queues", depth if queues else Text("—", style="dim"))
    return grid


class SystemPanel(Vertical):
    """Filled by the dashboard: `show_health()` and `show_rate()`."""

    DEFAULT_CSS = """
    SystemPanel { height: auto; }
    SystemPanel > #health { height: auto; }
    SystemPanel > #rate-line { height: 1; }
    SystemPanel > Sparkline { height: 2; margin: 0 0 0 10; }
    """

    def compose(self) -> ComposeResult:
        yield Static(health_table(None), id="health")
        yield Static(Text("runs/min  —", style="dim"), id="rate-line")
        yield Sparkline([0.0], id="runs-spark")

    def show_health(self, health: dict[str, Any] | None, offline: bool = False) -> None:
        self.query_one("#health", Static).update(health_table(health, offline))

    def show_rate(self, rate: dict[str, Any] | None) -> None:
        line = self.query_one("#rate-line", Static)
        spark = self.query_one(Sparkline)
        if not rate or not rate.get("per_minute"):
            line.update(Text("runs/min  not reported by this daemon", style="dim"))
            return
        per = rate["per_minute"]
        spark.data = [float(m.get("finished", 0)) for m in per] or [0.0]
        failed = rate.get("failed_last_hour", 0)
        text = Text.assemble(("runs/min ", "bold"), f" {per[-1].get('finished', 0)} now, "
                             f"{max(m.get('finished', 0) for m in per)} peak  ", ("failures 1h ", "bold"),
                             (str(failed), "bold red" if failed else "green"))
        line.update(text)
