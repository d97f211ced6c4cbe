"""sys:*, activity:* and notifications:* commands."""

from __future__ import annotations

from typing import Any

from nexus_core.commands.registry import Command, Param, command


def _r() -> Any:
    from nexus_core.commands import render

    return render


command(Command("sys:health", "Database, Redis, workers, queue depths, version and uptime.", "system.health",
                render=lambda r: _r().health(r), outcome=lambda r: 0 if r.get("ok") else 1))
command(Command("sys:metrics", "Run and RPC counters and latencies since the daemon started.", "system.metrics",
                render=lambda r: _r().key_values(
                    [(k, v) for k, v in sorted(r["counters"].items())]
                    + [(k, f"p50 {v['p50_ms']} ms, p99 {v['p99_ms']} ms, n={v['count']}")
                       for k, v in sorted(r["latency"].items())])))
command(Command("daemon:stop", "Stop the daemon gracefully: no new work, running jobs get the grace period.",
                "system.stop", render=lambda r: _r().message(
                    f"daemon pid {r['pid']} is stopping; running jobs get up to {r['grace_s']:g}s to finish"),
                mutating=True, autostart=False))
command(Command("activity:recent", "The activity log, newest first.", "activity.recent",
                (Param("limit", "how many events", type=int),), render=lambda r: _r().events(r)))
command(Command("notifications:list", "Notifications, newest first.", "notifications.list",
                (Param("unread", "only unread ones", type=bool),),
                build=lambda a: {"unread_only": bool(a.get("unread"))}, render=lambda r: _r().notifications(r)))
command(Command("notifications:read", "Mark notifications as read.", "notifications.read",
                (Param("ids", "notification ids, comma-separated"), Param("all", "mark all as read", type=bool)),
                build=lambda a: {"all": bool(a.get("all")),
                                 "ids": [int(i) for i in a["ids"].split(",") if i.strip().isdigit()]
                                 if a.get("ids") else None},
                render=lambda r: _r().message(f"marked {r['marked_read']} as read"), mutating=True))

command(Command("mode:status", "Your power mode, when god mode ends, and the modes you may enter.", "mode.get",
                render=lambda r: _r().mode(r)))
command(Command("mode:god", "Admins: enter god mode (bulk actions, SQL console, no separate approvals); "
                            "it ends by itself.", "mode.set",
                (Param("minutes", "how long, at most 240 (default: modes.god_minutes, 15)", type=float),),
                build=lambda a: {"mode": "god", **({"minutes": a["minutes"]} if a.get("minutes") is not None
                                                   else {})},
                render=lambda r: _r().mode(r), mutating=True,
                examples=("nexus mode:god --minutes 5",)))
command(Command("mode:normal", "Leave god mode.", "mode.set", build=lambda a: {"mode": "normal"},
                render=lambda r: _r().mode(r), mutating=True))
command(Command("mode:ultra", "Autonomous AI mode (not available yet).", "mode.set", build=lambda a: {"mode": "ultra"},
                render=lambda r: _r().mode(r), mutating=True))
command(Command("db:query", "God mode: run one read-only SELECT on the store; secrets are masked.", "db.query",
                (Param("sql", "one SELECT (or WITH, EXPLAIN, VALUES) statement", positional=True, required=True),
                 Param("limit", "at most this many rows (default 200, at most 1000)", type=int)),
                render=lambda r: _r().query(r),
                examples=("nexus db:query \"SELECT status, count(*) FROM runs GROUP BY status\"",)))
