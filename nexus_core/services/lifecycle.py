"""A run's writes on the hot path: accepted (a trigger), claimed by a worker, its attempt's outcome.

Each is a few statements run thousands of times a second, so they are `fast.Prepared` statements, and
each is `batched`: the store's writer runs all the claims (or outcomes, or triggers) of one commit in
one call, reading a workflow once for all of them and writing their attempt rows and the workflow's
counters once per batch.  A batch does exactly what the single calls, in order, would do.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from nexus_core.errors import NexusError
from nexus_core.services import activity, fires
from nexus_core.services import workflows as wf_service
from nexus_core.store import fast
from nexus_core.store.models import attempts_table as T
from nexus_core.store.models import new_id
from nexus_core.store.models import runs_table as R
from nexus_core.store.models import workflows_table as W
from nexus_core.store.types import UTCDateTime, utcnow
from nexus_core.store.writer import Calls, Failed, batched

CLAIMABLE = ("queued", "retrying")
FINAL = ("succeeded", "failed", "dead")
_RUN_KEYS = ("id", "organization_id", "workflow_id", "workflow_name", "trigger", "triggered_by", "scheduled_for",
             "queue", "status", "attempt", "max_attempts", "created_at")
_INSERT_RUN = fast.insert(R, _RUN_KEYS)
# A batch's claims of one attempt number in one statement (a run claimed twice in a batch is listed once).
_CLAIM_RUNS = fast.PreparedIn(
    sa.update(R)
    .where(R.c.id.in_(sa.bindparam("_ids", expanding=True)), R.c.attempt == sa.bindparam("_attempt"),
           sa.or_(R.c.status == CLAIMABLE[0], R.c.status == CLAIMABLE[1]))
    .values(status="running", started_at=sa.bindparam("_now"), worker_id=sa.bindparam("_worker"),
            next_attempt_at=None)
    # What the worker and the outcome need, not the whole row: every column returned is converted.
    .returning(R.c.id, R.c.organization_id, R.c.workflow_id, R.c.workflow_name, R.c.trigger, R.c.queue,
               R.c.attempt, R.c.max_attempts, R.c.created_at, R.c.worker_id), "_ids")
_WORKFLOWS_BY_ID = fast.PreparedIn(sa.select(W.c.id, W.c.name, W.c.kind, W.c.payload, W.c.timeout, W.c.backoff)
                                   .where(W.c.id.in_(sa.bindparam("_ids", expanding=True))), "_ids")
# Guarded by the attempt so a late outcome of an attempt already given up on changes nothing.
_FINISH_RUN = fast.Prepared(
    sa.update(R).where(R.c.id == sa.bindparam("_id"), R.c.attempt == sa.bindparam("_attempt"), R.c.status == "running")
    .values(status=sa.bindparam("_status"), attempt=sa.bindparam("_next"), finished_at=sa.bindparam("_finished"),
            next_attempt_at=sa.bindparam("_due"), duration_ms=sa.bindparam("_duration"),
            output=sa.bindparam("_output"), error=sa.bindparam("_error")))
# On Postgres a batch's guarded updates go in one round trip; RETURNING tells which changed their row.
_FINISH_RUN_RETURNING = fast.Prepared(_FINISH_RUN.stmt.returning(R.c.id))
# SQLite: a batch's successes in one statement, each row's own duration and output joined in from VALUES
# (UPDATE … FROM, SQLite 3.33; Nexus needs 3.35 for RETURNING anyway).
_SQLITE_SUCCEEDED = (
    "UPDATE runs SET status = 'succeeded', finished_at = ?, next_attempt_at = NULL, error = NULL, "
    "duration_ms = v.column3, output = v.column4 FROM (VALUES {rows}) AS v "
    "WHERE runs.id = v.column1 AND runs.attempt = v.column2 AND runs.status = 'running' RETURNING runs.id")
_sqlite_succeeded_sql: dict[int, str] = {}
_ATTEMPT_KEYS = ("run_id", "organization_id", "attempt", "status", "worker_id", "started_at", "finished_at",
                 "duration_ms", "error", "output")
_INSERT_ATTEMPT = fast.insert(T, _ATTEMPT_KEYS)
# Which of a batch's workflows have a fire held back: served by the partial index ix_runs_waiting, which
# holds only those (the status is written into the statement: a planner matches a partial index's
# condition only on literals).
_WAITING_AMONG = fast.PreparedIn(
    sa.select(R.c.workflow_id).distinct()
    .where(R.c.workflow_id.in_(sa.bindparam("_ids", expanding=True)), R.c.status == sa.literal_column("'waiting'")),
    "_ids")
# The success counters ride on the same UPDATE as the last run: no extra statement per run.
_WORKFLOW_LAST_RUN = fast.Prepared(
    sa.update(W).where(W.c.id == sa.bindparam("_id"))
    .values(last_run_at=sa.bindparam("_at", type_=UTCDateTime), last_run_status=sa.bindparam("_status"),
            runs_succeeded=W.c.runs_succeeded + sa.bindparam("_ok", type_=sa.Integer),
            runs_failed=W.c.runs_failed + sa.bindparam("_bad", type_=sa.Integer)))
# The same for every workflow of a batch with as many successes (usually all of them: one run each).
_WORKFLOWS_SUCCEEDED = fast.PreparedIn(
    sa.update(W).where(W.c.id.in_(sa.bindparam("_ids", expanding=True)))
    .values(last_run_at=sa.bindparam("_at", type_=UTCDateTime), last_run_status="succeeded",
            runs_succeeded=W.c.runs_succeeded + sa.bindparam("_ok", type_=sa.Integer)), "_ids")


# -- accepted ---------------------------------------------------------------------------------------


def create(conn: sa.Connection, wf: dict[str, Any], trigger: str, actor: str,
           scheduled_for: datetime | None = None) -> dict[str, Any]:
    """Insert a queued run; the caller enqueues its message only after this commits."""
    row = _run_row(wf, trigger, actor, scheduled_for)
    _INSERT_RUN.rowcount(conn, row)
    return _full(row)


def _run_row(wf: dict[str, Any], trigger: str, actor: str, scheduled_for: datetime | None) -> dict[str, Any]:
    return {"id": new_id(), "organization_id": wf["organization_id"], "workflow_id": wf["id"],
            "workflow_name": wf["name"], "trigger": trigger, "triggered_by": actor, "scheduled_for": scheduled_for,
            "queue": wf["queue"], "status": "queued", "attempt": 1, "max_attempts": wf["retries"] + 1,
            "created_at": utcnow()}


def _full(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "started_at": None, "finished_at": None, "next_attempt_at": None, "duration_ms": None,
            "error": None, "output": None}


def _trigger_event(wf: dict[str, Any], run: dict[str, Any], actor: str, approval: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"run_id": run["id"]}
    message = f"{actor} triggered {wf['name']}"
    if approval and wf["requires_approval"]:
        data["approval"] = approval
        message += f" (approval: {approval})"
    return {"actor": actor, "action": "workflow.triggered", "target": wf["name"], "message": message, "data": data}


def _trigger_many(conn: sa.Connection, calls: Calls) -> list[Any]:
    found: dict[tuple[str, str], Any] = {}
    out: list[Any] = []
    rows: list[dict[str, Any]] = []
    events: list[tuple[str, dict[str, Any]]] = []
    for args, kwargs in calls:
        org_id, name, actor, trig, approval = _trigger_args(*args, **kwargs)
        try:
            if (org_id, name) not in found:
                found[org_id, name] = wf_service.find(conn, org_id, name)
            wf = found[org_id, name]
            wf_service.require_approval(wf, approval, f"auto:trigger {name} --yes")
        except NexusError as exc:  # refused before anything of this call was written
            out.append(Failed(exc))
            continue
        row = _run_row(wf, trig, actor, None)
        rows.append(row)
        events.append((org_id, _trigger_event(wf, row, actor, approval)))
        out.append(_full(row))
    _INSERT_RUN.many(conn, rows)
    activity.record_many(conn, events)
    return out


def _trigger_args(org_id: str, name: str, actor: str, trigger: str = "manual",
                  approval: str | None = None) -> tuple[str, str, str, str, str | None]:
    return org_id, name, actor, trigger, approval


@batched(_trigger_many)
def trigger(conn: sa.Connection, org_id: str, name: str, actor: str, trigger: str = "manual",
            approval: str | None = None) -> dict[str, Any]:
    """A new run of a workflow, made by hand (or a webhook): the run row and its activity event."""
    return _unwrap(_trigger_many(conn, [((org_id, name, actor, trigger, approval), {})])[0])


def _unwrap(value: Any) -> Any:
    if isinstance(value, Failed):
        raise value.exc
    return value


# -- claimed ------------------------------------------------------------------------------------------


def _claim_many(conn: sa.Connection, calls: Calls) -> list[Any]:
    now = utcnow()  # the batch is claimed by one transaction, at one instant
    wanted = [_claim_args(*args, **kwargs) for args, kwargs in calls]
    lists: dict[tuple[int, str], dict[str, None]] = {}  # ordered sets of run ids
    for run_id, attempt, worker_id in wanted:
        lists.setdefault((attempt, worker_id), {})[run_id] = None
    claimed: dict[tuple[str, int], dict[str, Any]] = {}
    for (attempt, worker_id), ids in lists.items():
        for run in _CLAIM_RUNS.rows_in(conn, list(ids), {"_attempt": attempt, "_now": now, "_worker": worker_id}):
            claimed[run["id"], attempt] = run
    workflows = {wf["id"]: wf for wf in _WORKFLOWS_BY_ID.rows_in(
        conn, sorted({run["workflow_id"] for run in claimed.values()}))}
    out: list[Any] = []
    for run_id, attempt, _ in wanted:
        # Popped: a second claim of the same attempt in this batch finds it taken, as it would alone.
        # The attempt's own row is written with its outcome; until then the run row describes it.
        run = claimed.pop((run_id, attempt), None)
        if run is None:
            out.append(None)
            continue
        wf = workflows.get(run["workflow_id"])
        out.append({"run": run, "workflow": dict(wf) if wf else None, "started_at": now})
    return out


def _claim_args(run_id: str, attempt: int, worker_id: str) -> tuple[str, int, str]:
    return run_id, attempt, worker_id


@batched(_claim_many)
def claim(conn: sa.Connection, run_id: str, attempt: int, worker_id: str) -> dict[str, Any] | None:
    """Mark an attempt running, if it is still due; None means another delivery owns or finished it."""
    return _claim_many(conn, [((run_id, attempt, worker_id), {})])[0]


# -- finished -----------------------------------------------------------------------------------------


class _Outcomes:
    """Successes of one batch: their guarded updates, attempt rows, workflow counters and held fires, together."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], datetime, str, dict[str, Any]]] = []  # run, started, output, outcome

    def add(self, run: dict[str, Any], started_at: datetime, output: str) -> dict[str, Any]:
        outcome: dict[str, Any] = {"status": "stale", "due": None}  # filled in by flush()
        self.calls.append((run, started_at, output, outcome))
        return outcome

    def flush(self, conn: sa.Connection) -> None:
        if not self.calls:
            return
        params, attempts = [], []
        counters: dict[str, int] = {}  # workflow id -> successes
        last: dict[str, dict[str, Any]] = {}  # workflow id -> the outcome of its last success here
        now = utcnow()  # the batch's outcomes are written by one transaction, at one instant
        for run, started_at, output, _ in self.calls:
            params.append({"_id": run["id"], "_attempt": run["attempt"], "_status": "succeeded", "_next": run["attempt"],
                           "_finished": now, "_due": None, "_duration": (now - started_at).total_seconds() * 1000,
                           "_output": output, "_error": None})
        if conn.dialect.name == "sqlite":
            changes: list[Any] = _sqlite_succeeded(conn, now, params)
        else:  # one round trip for all (psycopg's pipelined executemany); RETURNING tells which changed
            changes = _FINISH_RUN_RETURNING.rows_each(conn, params)
        for (run, started_at, output, outcome), values, changed in zip(self.calls, params, changes):
            if not changed:
                continue  # a late outcome of an attempt already given up on: changes nothing
            attempts.append({"run_id": run["id"], "organization_id": run["organization_id"], "attempt": run["attempt"],
                             "status": "succeeded", "worker_id": run.get("worker_id"), "started_at": started_at,
                             "finished_at": values["_finished"], "duration_ms": values["_duration"], "error": None,
                             "output": output})
            counters[run["workflow_id"]] = counters.get(run["workflow_id"], 0) + 1
            outcome.update(status="succeeded", attempt=run["attempt"], released=None)
            last[run["workflow_id"]] = outcome
        _INSERT_ATTEMPT.many(conn, attempts)
        by_count: dict[int, list[str]] = {}
        for wf_id, ok in counters.items():
            by_count.setdefault(ok, []).append(wf_id)
        for ok, wf_ids in by_count.items():
            _WORKFLOWS_SUCCEEDED.rowcount_in(conn, wf_ids, {"_at": now, "_ok": ok})
        # Once for each workflow after all its outcomes: releasing after each would free the same one
        # fire (the one released is under way, so the next release finds a run active).
        for row in _WAITING_AMONG.rows_in(conn, sorted(last)):
            last[row["workflow_id"]]["released"] = fires.release_waiting(conn, row["workflow_id"])
        self.calls = []


def _sqlite_succeeded(conn: sa.Connection, now: datetime, params: list[dict[str, Any]]) -> list[bool]:
    """Write the successes of `params` in one UPDATE; for each, whether it changed its run (in order: of
    two outcomes of the same attempt only the first counts, as when they are written one after the other)."""
    sql = _sqlite_succeeded_sql.get(len(params))
    if sql is None:
        sql = _sqlite_succeeded_sql[len(params)] = _SQLITE_SUCCEEDED.format(rows=", ".join(["(?, ?, ?, ?)"] * len(params)))
    values: list[Any] = [fast.sqlite_utc(now)]
    for p in params:
        values += (p["_id"], p["_attempt"], p["_duration"], p["_output"])
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(sql, values)
        changed = {row[0] for row in cur.fetchall()}
    finally:
        cur.close()
    out = []
    for p in params:
        out.append(p["_id"] in changed)
        changed.discard(p["_id"])
    return out


def _finish_many(conn: sa.Connection, calls: Calls) -> list[Any]:
    pending = _Outcomes()
    out: list[Any] = []
    for args, kwargs in calls:
        run, opts = _finish_args(*args, **kwargs)
        if opts["ok"]:
            out.append(pending.add(run, opts["started_at"], opts["output"]))
        else:
            pending.flush(conn)  # so the call below sees what the ones before it wrote, as it would alone
            out.append(_finish_one(conn, run, **opts))
    pending.flush(conn)
    return out


def _finish_args(run: dict[str, Any], *, ok: bool, started_at: datetime, output: str = "", error: str | None = None,
                 retryable: bool = True, backoff: float = 1.0) -> tuple[dict[str, Any], dict[str, Any]]:
    return run, {"ok": ok, "started_at": started_at, "output": output, "error": error, "retryable": retryable,
                 "backoff": backoff}


def _release(conn: sa.Connection, workflow_id: str) -> tuple[str, str] | None:
    """After a final outcome: let the oldest fire of the workflow held back (status waiting) go, if any."""
    if not _WAITING_AMONG.rows_in(conn, [workflow_id]):  # the usual case: one probe of a tiny index
        return None
    return fires.release_waiting(conn, workflow_id)


def _seconds(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _finish_one(conn: sa.Connection, run: dict[str, Any], *, ok: bool, started_at: datetime, output: str = "",
                error: str | None = None, retryable: bool = True, backoff: float = 1.0) -> dict[str, Any]:
    now = utcnow()
    duration = (now - started_at).total_seconds() * 1000
    attempt = run["attempt"]
    due, next_attempt, finished = None, attempt, now
    if ok:
        status = "succeeded"
    elif retryable and attempt < run["max_attempts"]:
        due = now + timedelta(seconds=backoff * 2 ** (attempt - 1))
        status, next_attempt, finished = "retrying", attempt + 1, None
    else:
        status = "dead" if attempt >= run["max_attempts"] and run["max_attempts"] > 1 else "failed"
    if not _FINISH_RUN.rowcount(conn, {"_id": run["id"], "_attempt": attempt, "_status": status, "_next": next_attempt,
                                       "_finished": finished, "_due": due, "_duration": duration, "_output": output,
                                       "_error": error}):
        return {"status": "stale", "due": None}
    _INSERT_ATTEMPT.rowcount(conn, {"run_id": run["id"], "organization_id": run["organization_id"], "attempt": attempt,
                                    "status": "succeeded" if ok else "failed", "worker_id": run.get("worker_id"),
                                    "started_at": started_at, "finished_at": now, "duration_ms": duration,
                                    "error": error, "output": output})
    if status in FINAL:
        _WORKFLOW_LAST_RUN.rowcount(conn, {"_id": run["workflow_id"], "_at": now, "_status": status,
                                           "_ok": int(status == "succeeded"), "_bad": int(status != "succeeded")})
    if status in ("failed", "dead"):
        _report_failure(conn, run, status, error or "failed", attempt)
    elif status == "retrying":
        activity.record(conn, run["organization_id"], "worker", "run.retrying", target=run["workflow_name"],
                        level="warning", data={"run_id": run["id"], "attempt": attempt},
                        message=f"{run['workflow_name']} attempt {attempt} of {run['max_attempts']} failed: "
                                f"{first_line(error)}; next attempt in {_seconds(due - now) if due else '?'}")
    released = _release(conn, run["workflow_id"]) if status in FINAL else None
    return {"status": status, "due": due, "attempt": next_attempt, "released": released}


@batched(_finish_many)
def finish(conn: sa.Connection, run: dict[str, Any], *, ok: bool, started_at: datetime, output: str = "",
           error: str | None = None, retryable: bool = True, backoff: float = 1.0) -> dict[str, Any]:
    """Record an attempt's outcome; returns the run's new state and, for a retry, when it is due.

    A final outcome lets the next fire of the workflow held back (overlap policy queue, or fires made
    together) go: it is returned as `released` (run id, queue) for the caller to send."""
    return _finish_one(conn, run, ok=ok, started_at=started_at, output=output, error=error, retryable=retryable,
                       backoff=backoff)


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:200] if (text or "").strip() else "no error text"


def _report_failure(conn: sa.Connection, run: dict[str, Any], status: str, error: str, attempt: int) -> None:
    what = "is dead after all attempts" if status == "dead" else "failed"
    title = f"{run['workflow_name']} {what}"
    body = f"run {run['id']} attempt {attempt}: {first_line(error)}"
    activity.record(conn, run["organization_id"], "worker", f"run.{status}", target=run["workflow_name"],
                    level="error", message=f"{title}: {first_line(error)}", data={"run_id": run["id"]})
    activity.notify(conn, run["organization_id"], title, body, workflow_id=run["workflow_id"], run_id=run["id"])
