"""How the TUI writes times, schedules, rates and statuses; pure functions of their inputs and `now`."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from rich.text import Text

from nexus_core.commands.render import STATUS_STYLE

ALIAS_CRON = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
              "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
LEVEL_STYLE = {"info": "", "warning": "yellow", "error": "bold red", "debug": "dim"}


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def span(seconds: float) -> str:
    """A duration in the largest unit that keeps it short: 45s, 12m, 3.5h, 2.0d."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def relative(value: str | None, now: datetime) -> str:
    """`in 5m`, `3h ago`, or `—`."""
    moment = parse_iso(value)
    if moment is None:
        return "—"
    delta = (moment - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"


def local_time(value: str | None, *, seconds: bool = True) -> str:
    """An ISO time as the terminal's local wall time."""
    moment = parse_iso(value)
    if moment is None:
        return "—"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def clock_time(value: str | None) -> str:
    moment = parse_iso(value)
    return moment.astimezone().strftime("%H:%M:%S") if moment else "—"


def status(value: str | None) -> Text:
    return Text(value or "—", style=STATUS_STYLE.get(value or "", ""))


def level(value: str) -> str:
    return LEVEL_STYLE.get(value, "")


def duration_ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1000:
        return f"{value:.0f} ms"
    return f"{value / 1000:.1f} s"


def success_rate(wf: dict[str, Any]) -> str:
    rate = wf.get("success_rate")
    if rate is None:
        return "—"
    return f"{rate * 100:.0f}%"


@lru_cache(maxsize=4096)
def cron_words(expr: str | None) -> str:
    """`*/15 * * * *` → `Every 15 minutes`; the expression itself if it cannot be described."""
    if not expr:
        return ""
    fields = ALIAS_CRON.get(expr, expr).split()
    if len(fields) == 6:  # Nexus puts seconds last; the describer wants them first
        fields = [fields[5], *fields[:5]]
    try:
        from cron_descriptor import Options, get_description

        options = Options()
        options.use_24hour_time_format = True
        options.verbose = False
        return str(get_description(" ".join(fields), options))
    except Exception:  # noqa: BLE001 - a description is a nicety; the expression is the truth
        return expr


def schedule_words(wf: dict[str, Any]) -> str:
    """The schedule as a person says it: `Every 15 minutes`, `once at 2026-12-01 09:00`, `manual`."""
    if wf.get("cron"):
        return cron_words(wf["cron"])
    if wf.get("run_at"):
        return f"once at {local_time(wf['run_at'], seconds=False)}"
    return "manual"


def last_run(wf: dict[str, Any], now: datetime) -> Text:
    if not wf.get("last_run_status"):
        return Text("—", style="dim")
    text = status(wf["last_run_status"])
    text.append(f" {relative(wf.get('last_run_at'), now)}", style="dim")
    return text
