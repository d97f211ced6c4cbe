"""Rich renderables for command answers; imported only when a person, not a script, reads the output."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo
from typing import Any

from rich.console import Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"active": "green", "paused": "yellow", "error": "red", "completed": "dim",
                "queued": "cyan", "running": "blue", "succeeded": "green", "failed": "red", "retrying": "yellow",
                "dead": "bold red", "info": "", "warning": "yellow", "waiting": "cyan", "skipped": "dim"}


def status(value: str | None) -> Text:
    return Text(value or "—", style=STATUS_STYLE.get(value or "", ""))


def _relative(moment: datetime) -> str:
    delta = (moment - datetime.now(timezone.utc)).total_seconds()
    span = abs(delta)
    if span < 60:
        rel = f"{span:.0f}s"
    elif span < 3600:
        rel = f"{span / 60:.0f}m"
    elif span < 86400:
        rel = f"{span / 3600:.1f}h"
    else:
        rel = f"{span / 86400:.1f}d"
    return f"in {rel}" if delta > 0 else f"{rel} ago"


def when(iso: str | None) -> str:
    """An ISO time as local time, its zone named (the workflow's own may differ), plus how long ago or ahead."""
    if not iso:
        return "—"
    moment = datetime.fromisoformat(iso)
    return f"{moment.astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')} ({_relative(moment)})"


def local_zone() -> str:
    """The terminal's zone as a table header names it: the short times below are in it."""
    return datetime.now().astimezone().strftime("%Z")


def short(iso: str | None) -> str:
    """A table cell's time, in the zone its column header names: the time alone today, the date too otherwise."""
    if not iso:
        return "—"
    moment = datetime.fromisoformat(iso)
    local, today = moment.astimezone(), datetime.now().astimezone()
    if local.date() == today.date():
        shown = local.strftime("%H:%M:%S")
    elif local.year == today.year:
        shown = local.strftime("%m-%d %H:%M")
    else:
        shown = local.strftime("%Y-%m-%d %H:%M")
    return f"{shown} ({_relative(moment)})"


def schedule(wf: dict[str, Any]) -> str:
    if wf.get("cron"):
        return f"{wf['cron']} ({wf['timezone']})"
    if wf.get("run_at"):
        return f"once at {when(wf['run_at'])}"
    return "manual"


def workflows(rows: list[dict[str, Any]]) -> Any:
    if not rows:
        return Text("No workflows yet. Create one with `nexus auto:create NAME --kind noop` "
                    "or load config/workflows.example.toml with `nexus auto:apply FILE`.")
    table = Table(box=None, header_style="bold", pad_edge=False)
    zone = local_zone()
    for col in ("NAME", "KIND", "STATUS", "SCHEDULE", f"NEXT FIRE ({zone})", f"LAST RUN ({zone})"):
        table.add_column(col)
    for wf in rows:
        last = f"{wf['last_run_status']} {short(wf['last_run_at'])}" if wf.get("last_run_status") else "—"
        table.add_row(wf["name"], wf["kind"], status(wf["status"]), schedule(wf), short(wf.get("next_fire_at")), last)
    return table


def key_values(pairs: list[tuple[str, Any]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in pairs:
        table.add_row(key, value if isinstance(value, Text) else Text(str(value if value not in (None, "") else "—")))
    return table


def workflow(wf: dict[str, Any]) -> Any:
    import json

    detail = key_values([
        ("name", wf["name"]), ("kind", f"{wf['kind']} (queue {wf['queue']})"), ("status", status(wf["status"])),
        ("description", wf["description"]), ("schedule", schedule(wf)), ("next fire", when(wf.get("next_fire_at"))),
        ("attempts", f"{wf['attempts']} ({wf['retries']} retries, backoff {wf['backoff']:g}s doubling)"),
        ("timeout", f"{wf['timeout']:g}s"), ("payload", json.dumps(wf["payload"], sort_keys=True)),
        ("policies", f"misfire {wf['misfire']}" + (f" (at most {wf['max_catchup']})" if wf["misfire"] == "all" else "")
                     + f", grace {wf['grace']:g}s, overlap {wf['overlap']}"),
        ("created", f"{when(wf['created_at'])} by {wf['created_by']}"), ("id", wf["id"]),
    ])
    parts: list[Any] = [detail]
    if wf.get("notice"):
        parts.append(Text(f"note: {wf['notice']}", style="yellow"))
    if wf.get("recent_runs") is not None:
        parts += [Text(""), Text("Recent runs", style="bold"), runs(wf["recent_runs"])]
    return Group(*parts)


def next_fires(r: dict[str, Any]) -> Any:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("#")
    table.add_column(f"LOCAL ({r['timezone']})")
    table.add_column("UTC")
    for i, fire in enumerate(r["fires"], 1):
        local = datetime.fromisoformat(fire["at"]).astimezone(ZoneInfo(r["timezone"]))  # %Z: CET, not UTC+01:00
        table.add_row(str(i), local.strftime("%a %Y-%m-%d %H:%M:%S %Z"),
                      datetime.fromisoformat(fire["at"]).strftime("%Y-%m-%d %H:%M:%S"))
    parts: list[Any] = [Text(f"{r['name']}: {r['cron'] or 'one-off'}", style="bold"), table]
    if r.get("notice"):
        parts.append(Text(f"note: {r['notice']}", style="yellow"))
    return Group(*parts)


def runs(rows: list[dict[str, Any]]) -> Any:
    """One line per run and, under a failed one, its error's first line: an error in a column of its own
    is squeezed to a sliver on an 80-column terminal, on its own line it reads whole."""
    if not rows:
        return Text("No runs yet.")
    heads = ("RUN", "TRIGGER", "STATUS", "ATTEMPT", f"STARTED ({local_zone()})", "DURATION")
    cells = [(r["id"][-12:], r["trigger"], r["status"], f"{r['attempt']}/{r['max_attempts']}",
              short(r.get("started_at") or r.get("created_at")),
              f"{r['duration_ms']:.0f} ms" if r.get("duration_ms") is not None else "—") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    lines: list[Any] = [Text("  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip(), style="bold")]
    for r, row in zip(rows, cells):
        line = Text()
        for i, (value, width) in enumerate(zip(row, widths)):
            line.append(("  " if i else "") + value.ljust(width), style=STATUS_STYLE.get(value, "") if i == 2 else "")
        line.rstrip()
        lines.append(line)
        error = (r.get("error") or "").strip().splitlines()
        if error:
            lines.append(Padding(Text(f"↳ {error[0]}", style="red"), (0, 0, 0, 2)))
    return Group(*lines)


def run(r: dict[str, Any]) -> Any:
    parts: list[Any] = [key_values([
        ("run", r["id"]), ("workflow", r["workflow"]), ("status", status(r["status"])),
        ("trigger", f"{r['trigger']} by {r['triggered_by']}"), ("attempt", f"{r['attempt']}/{r['max_attempts']}"),
        ("created", when(r["created_at"])), ("started", when(r["started_at"])), ("finished", when(r["finished_at"])),
        ("duration", f"{r['duration_ms']:.0f} ms" if r.get("duration_ms") is not None else None),
        ("error", r.get("error")),
    ])]
    if len(r.get("attempts") or []) > 1:
        table = Table(box=None, header_style="bold", pad_edge=False, title="Attempts", title_justify="left")
        for col in ("#", "STATUS", "STARTED", "DURATION"):
            table.add_column(col, no_wrap=True)
        table.add_column("ERROR", overflow="fold", ratio=1)
        for a in r["attempts"]:
            duration = f"{a['duration_ms']:.0f} ms" if a.get("duration_ms") is not None else "—"
            table.add_row(str(a["attempt"]), status(a["status"]), when(a["started_at"]), duration, a.get("error") or "")
        parts += [Text(""), table]
    if r.get("output"):
        parts += [Text(""), Text("Output (tail)", style="bold"), Text(r["output"])]
    if r.get("wait_timed_out"):
        parts.append(Text("still running: stopped waiting", style="yellow"))
    return Group(*parts)


def events(rows: list[dict[str, Any]]) -> Any:
    if not rows:
        return Text("No activity yet.")
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in (f"WHEN ({local_zone()})", "LEVEL", "WHO", "WHAT"):
        table.add_column(col, overflow="fold")
    for e in rows:
        table.add_row(short(e["at"]), status(e["level"]), e["actor"], e["message"] or e["action"])
    return table


def notifications(answer: dict[str, Any]) -> Any:
    table = Table(box=None, header_style="bold", pad_edge=False, title=f"{answer['unread']} unread",
                  title_justify="left")
    for col in ("ID", f"WHEN ({local_zone()})", "", "TITLE", "DETAIL"):
        table.add_column(col, overflow="fold")
    for n in answer["items"]:
        table.add_row(str(n["id"]), short(n["at"]), "" if n["read"] else "●", n["title"], n["body"])
    return table


def health(h: dict[str, Any]) -> Any:
    def ok(part: dict[str, Any]) -> Text:
        return Text("ok", style="green") if part.get("ok") else Text(f"DOWN {part.get('error', '')}", style="bold red")

    db, redis, workers = h["database"], h["redis"], h["workers"]
    queues = ", ".join(f"{q} {d['ready']}+{d['delayed']} delayed" if d.get("delayed") else f"{q} {d['ready']}"
                       for q, d in h.get("queues", {}).items()) or "—"
    return key_values([
        ("overall", Text("healthy", style="green") if h["ok"] else Text("DEGRADED", style="bold red")),
        ("daemon", f"v{h['version']} pid {h['pid']}, up {h['uptime_s']:.0f}s, socket {h['socket']}"),
        ("database", Text.assemble(ok(db), f"  {db['backend']} {db['url']}")),
        ("redis", Text.assemble(ok(redis), f"  {'embedded ' if redis['embedded'] else ''}{redis['url']}")),
        ("workers", f"{workers['processes']} process(es), {workers['threads']} thread(s) in the daemon"),
        ("queues", queues),
    ])


def stats(s: dict[str, Any]) -> Any:
    w, r, d = s["workflows"], s["runs"], s["runs_24h"]
    rate = f"{s['success_rate'] * 100:.1f}%" if s["success_rate"] is not None else "—"
    return key_values([
        ("workflows", f"{w['total']} ({w['active']} active, {w['paused']} paused, {w['error']} error, "
                      f"{w['completed']} completed)"),
        ("runs", f"{r['total']} executions: {r['succeeded']} succeeded, {r['failed']} failed, {r['dead']} dead, "
                 f"{r['queued'] + r['running'] + r['retrying']} in progress"),
        ("last 24 h", f"{d['total']} executions, {d['succeeded']} succeeded, {d['failed']} failed"),
        ("success rate", rate),
    ])


def message(text: str) -> Text:
    return Text(text)


def mode(m: dict[str, Any]) -> Any:
    if m["mode"] == "god":
        head = Text.assemble(("god mode", "bold red"), f" until {when(m['expires_at'])}")
    else:
        head = Text(f"{m['mode']} mode")
    others = [x for x in m["available"] if x != m["mode"]]
    hint = f"you may switch to: {', '.join(others)} (mode:{others[0]})" if others else "no other mode is open to you"
    return Group(head, Text(hint, style="dim"))


def bulk(r: dict[str, Any]) -> Any:
    parts: list[Any] = [Text(f"{r['action']}: {len(r['done'])} done" + (f" ({', '.join(r['done'])})" if r["done"]
                                                                       else ""))]
    for name, error in r["failed"].items():
        parts.append(Text.assemble((f"{name}: ", "bold red"), error))
    return Group(*parts)


def _cell(value: Any) -> Text:
    import json

    if value is None:
        return Text("NULL", style="dim")
    if isinstance(value, (dict, list)):
        return Text(json.dumps(value, ensure_ascii=False))
    return Text(str(value))  # Text, not str: a value like "[red]" is data, never Rich markup


def query(r: dict[str, Any]) -> Any:
    table = Table(header_style="bold", pad_edge=False, box=None)
    for col in r["columns"]:
        table.add_column(Text(col), overflow="fold")
    for row in r["rows"]:
        table.add_row(*(_cell(v) for v in row))
    note = f"{r['row_count']} row(s) in {r['elapsed_ms']:g} ms"
    if r["truncated"]:
        note += "; more rows were left out (raise --limit, at most 1000, or narrow the query)"
    return Group(table, Text(note, style="dim"))
