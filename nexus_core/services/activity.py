"""The activity log and notifications: who did what, and failures that must reach a person."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from nexus_core.errors import NotFoundError
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


_INSERT_EVENT = sa.insert(A)  # built once: activity is written on every trigger


def record(conn: sa.Connection, org: str, actor: str, action: str, *, target: str | None = None,
           message: str = "", level: str = "info", data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write one activity event and return it as sent to subscribers."""
    at = utcnow()
    result = conn.execute(_INSERT_EVENT, {"organization_id": org, "at": at, "level": level, "actor": actor,
                                          "action": action, "target": target, "message": message, "data": data or {}})
    event = {"id": result.inserted_primary_key[0], "at": at.isoformat(), "level": level, "actor": actor,
             "action": action, "target": target, "message": message, "data": data or {}}
    # Pushed to subscribers only once the transaction that wrote it has committed.
    conn.info.setdefault("after_commit", []).append(lambda: [fn(org, event) for fn in listeners])
    return event


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
