"""Runs and their attempts: creation, the worker's claim and outcome, history and recovery queries."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from nexus_core.errors import ConflictError, NotFoundError
from nexus_core.services import activity, fires
from nexus_core.services.workflows import require_approval
from nexus_core.store.models import attempts_table as T
from nexus_core.store.models import new_id
from nexus_core.store.models import runs_table as R
from nexus_core.store.models import workflows_table as W
from nexus_core.store.types import UTCDateTime, utcnow

CLAIMABLE = ("queued", "retrying")

# The statements a run passes through on every execution are built once: constructing a SQLAlchemy
# statement costs several times more than executing it, and these run thousands of times a second.
_INSERT_RUN = sa.insert(R)
_CLAIM_RUN = (
    sa.update(R)
    .where(R.c.id == sa.bindparam("_id"), R.c.attempt == sa.bindparam("_attempt"),
           sa.or_(R.c.status == CLAIMABLE[0], R.c.status == CLAIMABLE[1]))
    .values(status="running", started_at=sa.bindparam("_now"), worker_id=sa.bindparam("_worker"),
            next_attempt_at=None)
    .returning(*R.c)
)
_INSERT_ATTEMPT = sa.insert(T)
_WORKFLOW_BY_ID = sa.select(W).where(W.c.id == sa.bindparam("_id"))
# Guarded by the attempt so a late outcome of an attempt already given up on changes nothing.
_FINISH_RUN = sa.update(R).where(R.c.id == sa.bindparam("_id"), R.c.attempt == sa.bindparam("_attempt"),
                                 R.c.status == "running")
# The success counters ride on the same UPDATE as the last run: no extra statement per run.
_WORKFLOW_LAST_RUN = (
    sa.update(W).where(W.c.id == sa.bindparam("_id"))
    .values(last_run_at=sa.bindparam("_at", type_=UTCDateTime), last_run_status=sa.bindparam("_status"),
            runs_succeeded=W.c.runs_succeeded + sa.bindparam("_ok", type_=sa.Integer),
            runs_failed=W.c.runs_failed + sa.bindparam("_bad", type_=sa.Integer))
)


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


def create(conn: sa.Connection, wf: dict[str, Any], trigger: str, actor: str,
           scheduled_for: datetime | None = None) -> dict[str, Any]:
    """Insert a queued run; the caller enqueues its message only after this commits."""
    row = {"id": new_id(), "organization_id": wf["organization_id"], "workflow_id": wf["id"],
           "workflow_name": wf["name"], "trigger": trigger, "triggered_by": actor, "scheduled_for": scheduled_for,
           "queue": wf["queue"], "status": "queued", "attempt": 1, "max_attempts": wf["retries"] + 1,
           "created_at": utcnow()}
    conn.execute(_INSERT_RUN, row)
    return {**row, "started_at": None, "finished_at": None, "next_attempt_at": None, "duration_ms": None,
            "error": None, "output": None}


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


def claim(conn: sa.Connection, run_id: str, attempt: int, worker_id: str) -> dict[str, Any] | None:
    """Mark an attempt running, if it is still due; None means another delivery owns or finished it."""
    now = utcnow()
    claimed = conn.execute(_CLAIM_RUN, {"_id": run_id, "_attempt": attempt, "_now": now,
                                        "_worker": worker_id}).first()
    if claimed is None:
        return None
    run = claimed._mapping
    # The attempt's own row is written with its outcome; until then the run row describes it.
    wf = conn.execute(_WORKFLOW_BY_ID, {"_id": run["workflow_id"]}).first()
    return {"run": dict(run), "workflow": dict(wf._mapping) if wf else None, "started_at": now}


def finish(conn: sa.Connection, run: dict[str, Any], *, ok: bool, started_at: datetime, output: str = "",
           error: str | None = None, retryable: bool = True, backoff: float = 1.0,
           release_waiting: bool = False) -> dict[str, Any]:
    """Record an attempt's outcome; returns the run's new state and, for a retry, when it is due.

    With `release_waiting` (overlap policy `queue`), a final outcome lets the next held fire go:
    it is returned as `released` (run id, queue) for the caller to send."""
    now = utcnow()
    duration = (now - started_at).total_seconds() * 1000
    attempt = run["attempt"]
    values: dict[str, Any] = {"duration_ms": duration, "output": output, "error": error}
    due = None
    if ok:
        values.update(status="succeeded", finished_at=now)
    elif retryable and attempt < run["max_attempts"]:
        due = now + timedelta(seconds=backoff * 2 ** (attempt - 1))
        values.update(status="retrying", attempt=attempt + 1, next_attempt_at=due)
    else:
        values.update(status="dead" if attempt >= run["max_attempts"] and run["max_attempts"] > 1 else "failed",
                      finished_at=now)
    changed = conn.execute(_FINISH_RUN, {"_id": run["id"], "_attempt": attempt, **values}).rowcount
    if not changed:
        return {"status": "stale", "due": None}
    conn.execute(_INSERT_ATTEMPT, {"run_id": run["id"], "organization_id": run["organization_id"], "attempt": attempt,
                                   "status": "succeeded" if ok else "failed", "worker_id": run.get("worker_id"),
                                   "started_at": started_at, "finished_at": now, "duration_ms": duration,
                                   "error": error, "output": output})
    if values["status"] in ("succeeded", "failed", "dead"):
        succeeded = values["status"] == "succeeded"
        conn.execute(_WORKFLOW_LAST_RUN, {"_id": run["workflow_id"], "_at": now, "_status": values["status"],
                                          "_ok": int(succeeded), "_bad": int(not succeeded)})
    if values["status"] in ("failed", "dead"):
        _report_failure(conn, run, values["status"], error or "failed", attempt)
    elif values["status"] == "retrying":
        activity.record(conn, run["organization_id"], "worker", "run.retrying", target=run["workflow_name"],
                        level="warning", data={"run_id": run["id"], "attempt": attempt},
                        message=f"{run['workflow_name']} attempt {attempt} failed: {_first_line(error)}; "
                                f"retrying at {due.isoformat(timespec='seconds') if due else '?'}")
    released = None
    if release_waiting and values["status"] in ("succeeded", "failed", "dead"):
        released = fires.release_waiting(conn, run["workflow_id"])
    return {"status": values["status"], "due": due, "attempt": values.get("attempt", attempt), "released": released}


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:200] if (text or "").strip() else "no error text"


def _report_failure(conn: sa.Connection, run: dict[str, Any], status: str, error: str, attempt: int) -> None:
    what = "is dead after all attempts" if status == "dead" else "failed"
    title = f"{run['workflow_name']} {what}"
    body = f"run {run['id']} attempt {attempt}: {_first_line(error)}"
    activity.record(conn, run["organization_id"], "worker", f"run.{status}", target=run["workflow_name"],
                    level="error", message=f"{title}: {_first_line(error)}", data={"run_id": run["id"]})
    activity.notify(conn, run["organization_id"], title, body, workflow_id=run["workflow_id"], run_id=run["id"])


def interrupt(conn: sa.Connection, run_id: str, reason: str) -> dict[str, Any] | None:
    """Close an attempt whose worker vanished mid-run, and schedule the next attempt if one is left."""
    row = conn.execute(sa.select(R).where(R.c.id == run_id, R.c.status == "running")).first()
    if row is None:
        return None
    run = dict(row._mapping)
    wf = conn.execute(sa.select(W.c.backoff, W.c.overlap).where(W.c.id == run["workflow_id"])).first()
    return finish(conn, run, ok=False, started_at=run["started_at"] or utcnow(), error=reason,
                  backoff=wf.backoff if wf else 1.0, release_waiting=bool(wf and (wf.overlap == "queue" or run["trigger"] == "catchup")))


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
