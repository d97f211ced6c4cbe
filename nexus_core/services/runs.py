"""Runs and their attempts: history and recovery queries, re-runs; the hot-path writes live in lifecycle."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from nexus_core.errors import ConflictError, NotFoundError
from nexus_core.services import activity
from nexus_core.services.lifecycle import claim, create, finish, trigger  # noqa: F401 - the run's writes, re-exported
from nexus_core.services.workflows import require_approval
from nexus_core.store.models import attempts_table as T
from nexus_core.store.models import runs_table as R
from nexus_core.store.models import workflows_table as W
from nexus_core.store.types import utcnow

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def message_id(run_id: str, attempt: int) -> str:
    """The broker message id of one attempt: stable, so recovery can ask Redis whether it still holds it."""
    return f"{run_id}.{attempt}"


def public(row: Any) -> dict[str, Any]:
    m = row._mapping if hasattr(row, "_mapping") else row
    return {
        "id": m["id"], "workflow": m["workflow_name"], "workflow_id": m["workflow_id"], "trigger": m["trigger"],
        "triggered_by": m["triggered_by"], "scheduled_for": _iso(m["scheduled_for"]), "queue": m["queue"],
        "status": m["status"], "attempt": m["attempt"], "max_attempts": m["max_attempts"],
        "created_at": _iso(m["created_at"]), "started_at": _iso(m["started_at"]),
        "finished_at": _iso(m["finished_at"]), "next_attempt_at": _iso(m["next_attempt_at"]),
        "duration_ms": m["duration_ms"], "error": m["error"], "output": m["output"],
    }


def _one(conn: sa.Connection, org: str, run_id: str) -> Any:
    """The run with this id or unique id prefix in the organization, or a NotFoundError saying why not."""
    query = sa.select(R).where(R.c.organization_id == org)
    query = query.where(R.c.id.startswith(run_id)) if len(run_id) < 32 else query.where(R.c.id == run_id)
    rows = conn.execute(query.limit(2)).all()
    if not rows:
        raise NotFoundError(f"no run {run_id!r}; auto:logs NAME lists a workflow's runs", field="id")
    if len(rows) > 1:
        raise NotFoundError(f"run id prefix {run_id!r} is ambiguous; give more characters", field="id")
    return rows[0]


def get(conn: sa.Connection, org: str, run_id: str) -> dict[str, Any]:
    row = _one(conn, org, run_id)
    out = public(row)
    attempts = conn.execute(sa.select(T).where(T.c.run_id == out["id"]).order_by(T.c.attempt))
    out["attempts"] = [
        {"attempt": a.attempt, "status": a.status, "worker": a.worker_id, "started_at": _iso(a.started_at),
         "finished_at": _iso(a.finished_at), "duration_ms": a.duration_ms, "error": a.error, "output": a.output}
        for a in attempts
    ]
    if out["status"] == "running":  # the attempt under way has no row of its own until it ends
        out["attempts"].append({"attempt": out["attempt"], "status": "running", "worker": row.worker_id,
                                "started_at": out["started_at"], "finished_at": None, "duration_ms": None,
                                "error": None, "output": None})
    return out


def history(conn: sa.Connection, org: str, workflow_id: str, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(R).where(R.c.organization_id == org, R.c.workflow_id == workflow_id)
                        .order_by(R.c.id.desc()).limit(limit))
    return [public(r) for r in rows]


def interrupt(conn: sa.Connection, run_id: str, reason: str) -> dict[str, Any] | None:
    """Close an attempt whose worker vanished mid-run, and schedule the next attempt if one is left."""
    row = conn.execute(sa.select(R).where(R.c.id == run_id, R.c.status == "running")).first()
    if row is None:
        return None
    run = dict(row._mapping)
    wf = conn.execute(sa.select(W.c.backoff).where(W.c.id == run["workflow_id"])).first()
    outcome = finish(conn, run, ok=False, started_at=run["started_at"] or utcnow(), error=reason,
                     backoff=wf.backoff if wf else 1.0)
    return {**outcome, "organization_id": run["organization_id"], "workflow_name": run["workflow_name"]}


def unfinished(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every run that is not final, across organizations (for the daemon's recovery at start)."""
    rows = conn.execute(sa.select(R.c.id, R.c.status, R.c.attempt, R.c.queue, R.c.worker_id, R.c.next_attempt_at)
                        .where(R.c.status.in_(("queued", "retrying", "running"))))
    return [dict(r._mapping) for r in rows]


def get_status(conn: sa.Connection, run_id: str) -> str | None:
    return conn.execute(sa.select(R.c.status).where(R.c.id == run_id)).scalar_one_or_none()


RERUNNABLE = ("failed", "dead")


def rerun(conn: sa.Connection, org: str, run_id: str, actor: str, approval: str | None) -> dict[str, Any]:
    """A new manual run of a failed or dead run's workflow; the caller sends it after the commit."""
    old = _one(conn, org, run_id)._mapping
    if old["status"] not in RERUNNABLE:
        raise ConflictError(f"run {old['id']} is {old['status']}; only failed or dead runs can be re-run — "
                            "trigger the workflow instead", field="id")
    row = conn.execute(sa.select(W).where(W.c.id == old["workflow_id"], W.c.organization_id == org)).first()
    if row is None:
        raise NotFoundError(f"workflow {old['workflow_name']} of run {old['id']} was deleted; there is nothing "
                            "to re-run", field="id")
    wf = dict(row._mapping)
    require_approval(wf, approval, f"auto:rerun {old['id']} --yes")
    run = create(conn, wf, "manual", actor)
    data: dict[str, Any] = {"run_id": run["id"], "rerun_of": old["id"]}
    if approval and wf["requires_approval"]:
        data["approval"] = approval
    activity.record(conn, org, actor, "run.rerun", target=wf["name"], data=data,
                    message=f"{actor} re-ran {wf['name']}: run {old['id']} was {old['status']}")
    return {**run, "rerun_of": old["id"]}


FINISHED = ("succeeded", "failed", "dead")


def _minute_bucket(dialect: str) -> Any:
    """Minutes since the epoch of a run's finished_at, as an integer, in the dialect's own SQL."""
    if dialect == "sqlite":  # stored as UTC text; strftime('%s') reads it as UTC
        return sa.literal_column("CAST(strftime('%s', runs.finished_at) AS INTEGER) / 60")
    return sa.literal_column("CAST(floor(extract(epoch FROM runs.finished_at) / 60) AS BIGINT)")


def rate(conn: sa.Connection, org: str, minutes: int = 60, now: datetime | None = None) -> dict[str, Any]:
    """Runs finished per minute over the last `minutes` (oldest first, the current minute last), and the
    last hour's outcomes; failed counts failed and dead."""
    now = now or utcnow()
    current = now.replace(second=0, microsecond=0)
    start = current - timedelta(minutes=minutes - 1)
    failed = sa.func.sum(sa.case((R.c.status != "succeeded", 1), else_=0))
    bucket = _minute_bucket(conn.dialect.name)
    rows = conn.execute(sa.select(bucket, sa.func.count(), failed)
                        .where(R.c.organization_id == org, R.c.finished_at >= start, R.c.status.in_(FINISHED))
                        .group_by(bucket))
    counts = {int(minute): (int(n), int(bad or 0)) for minute, n, bad in rows}
    first = int(start.timestamp()) // 60
    per_minute = []
    for i in range(minutes):
        finished, bad = counts.get(first + i, (0, 0))
        at = datetime.fromtimestamp((first + i) * 60, timezone.utc)
        per_minute.append({"at": at.isoformat(), "finished": finished, "failed": bad})
    hour = dict(conn.execute(sa.select(R.c.status, sa.func.count())
                             .where(R.c.organization_id == org, R.c.finished_at >= now - timedelta(hours=1),
                                    R.c.status.in_(FINISHED))
                             .group_by(R.c.status)).all())
    return {"minutes": minutes, "per_minute": per_minute,
            "failed_last_hour": int(hour.get("failed", 0) + hour.get("dead", 0)),
            "succeeded_last_hour": int(hour.get("succeeded", 0))}
