"""The activity log and notifications: who did what, and failures that must reach a person."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from nexus_core.errors import NotFoundError
from nexus_core.store import fast
from nexus_core.store.models import activity_table as A
from nexus_core.store.models import notifications_table as N
from nexus_core.store.types import utcnow

# Set by the daemon so new events and notifications are pushed to subscribers after they are written.
listeners: list[Callable[[str, dict[str, Any]], None]] = []
notification_listeners: list[Callable[[str, dict[str, Any]], None]] = []


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def event_dict(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {"id": m["id"], "at": _iso(m["at"]), "level": m["level"], "actor": m["actor"], "action": m["action"],
            "target": m["target"], "message": m["message"], "data": m["data"] or {}}


# Prepared once: an event is written with every trigger.
_INSERT_EVENT = fast.insert(A, ("organization_id", "at", "level", "actor", "action", "target", "message", "data"),
                            returning_id=True)


def record(conn: sa.Connection, org: str, actor: str, action: str, *, target: str | None = None,
           message: str = "", level: str = "info", data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write one activity event and return it as sent to subscribers."""
    return record_many(conn, [(org, {"actor": actor, "action": action, "target": target, "message": message,
                                     "level": level, "data": data})])[0]


def record_many(conn: sa.Connection, events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Write activity events, (organization, fields as for record()) each; returns them as sent to subscribers."""
    rows = []
    for org, fields in events:
        rows.append({"organization_id": org, "at": utcnow(), "level": fields.get("level", "info"),
                     "actor": fields["actor"], "action": fields["action"], "target": fields.get("target"),
                     "message": fields.get("message", ""), "data": fields.get("data") or {}})
    if conn.dialect.name == "sqlite" and len(rows) > 1:
        # One executemany; SQLite numbers the rows of this one writer's transaction one after another
        # (each new rowid is one more than the largest), so the ids are the last one's and those before it.
        _INSERT_EVENT.many(conn, rows)
        last = int(conn.connection.dbapi_connection.execute("SELECT last_insert_rowid()").fetchone()[0])  # type: ignore[union-attr]
        ids = list(range(last - len(rows) + 1, last + 1))
    elif conn.dialect.name == "sqlite":
        ids = [_INSERT_EVENT.insert_id(conn, row) for row in rows]
    else:  # INSERT … RETURNING id, all of them in one round trip
        ids = [int(found[0]["id"]) for found in _INSERT_EVENT.rows_each(conn, rows)]
    out = [(row.pop("organization_id"), {"id": event_id, **row, "at": row["at"].isoformat()})
           for event_id, row in zip(ids, rows)]
    if out:
        # Pushed to subscribers only once the transaction that wrote them has committed.
        conn.info.setdefault("after_commit", []).append(lambda: [fn(org, event) for org, event in out
                                                                 for fn in listeners])
    return [event for _, event in out]


def recent(conn: sa.Connection, org: str, limit: int = 50, before_id: int | None = None) -> list[dict[str, Any]]:
    query = sa.select(A).where(A.c.organization_id == org)
    if before_id is not None:
        query = query.where(A.c.id < before_id)
    rows = conn.execute(query.order_by(A.c.id.desc()).limit(limit))
    return [event_dict(r) for r in rows]


def notify(conn: sa.Connection, org: str, title: str, body: str = "", *, level: str = "error",
           workflow_id: str | None = None, run_id: str | None = None) -> int:
    at = utcnow()
    result = conn.execute(sa.insert(N).values(organization_id=org, at=at, level=level, title=title[:200],
                                              body=body, workflow_id=workflow_id, run_id=run_id))
    item = {"id": int(result.inserted_primary_key[0]), "at": at.isoformat(), "level": level, "title": title[:200],
            "body": body, "workflow_id": workflow_id, "run_id": run_id, "read": False}
    conn.info.setdefault("after_commit", []).append(lambda: [fn(org, item) for fn in notification_listeners])
    return item["id"]


def notification_dict(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {"id": m["id"], "at": _iso(m["at"]), "level": m["level"], "title": m["title"], "body": m["body"],
            "workflow_id": m["workflow_id"], "run_id": m["run_id"], "read": m["read_at"] is not None}


def notifications(conn: sa.Connection, org: str, *, unread_only: bool = False, limit: int = 100) -> dict[str, Any]:
    query = sa.select(N).where(N.c.organization_id == org)
    if unread_only:
        query = query.where(N.c.read_at.is_(None))
    rows = conn.execute(query.order_by(N.c.id.desc()).limit(limit))
    unread = conn.execute(sa.select(sa.func.count()).select_from(N)
                          .where(N.c.organization_id == org, N.c.read_at.is_(None))).scalar_one()
    return {"unread": unread, "items": [notification_dict(r) for r in rows]}


def mark_read(conn: sa.Connection, org: str, ids: list[int] | None) -> int:
    """Mark the given notifications (or all, when ids is None) as read; returns how many changed."""
    query = sa.update(N).where(N.c.organization_id == org, N.c.read_at.is_(None))
    if ids is not None:
        query = query.where(N.c.id.in_(ids))
        found = conn.execute(sa.select(sa.func.count()).select_from(N)
                             .where(N.c.organization_id == org, N.c.id.in_(ids))).scalar_one()
        if found < len(set(ids)):
            raise NotFoundError("no such notification: check the ids with notifications:list", field="ids")
    return conn.execute(query.values(read_at=utcnow())).rowcount
