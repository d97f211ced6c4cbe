"""Scheduled fires: which runs a due fire makes (misfire and overlap policies), written exactly once.

A workflow's `next_fire_at` is the next fire not yet made.  Making it is one transaction that moves
`next_fire_at` forward *guarded by its old value* and inserts the fire's run rows (unique per workflow
and scheduled time).  Two daemons that both see a fire due race on the guard; the loser changes
nothing.  A daemon killed after the commit finds `next_fire_at` already moved when it starts again,
and the run it had not yet sent to Redis is resent by recovery (it is `queued` in the store).

Policies (documented in the README):
- grace: a fire that is late by at most `grace` seconds is on time and runs normally.
- misfire, for fires later than that (daemon down, clock jump, long stall, resumed after a pause):
  `skip` runs none of them, `once` runs a single catch-up for the latest one, `all` runs each of them,
  at most `max_catchup` (the latest ones).
- overlap, when a run of the workflow is still queued or running: `skip` records the fire as a
  `skipped` run and an activity event, `queue` keeps it `waiting` until the run before it ends,
  `allow` runs it alongside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from nexus_core import schedule
from nexus_core.services import activity
from nexus_core.store import fast
from nexus_core.store.models import ACTIVE_RUN_STATUSES, new_id
from nexus_core.store.models import runs_table as R
from nexus_core.store.models import workflows_table as W
from nexus_core.store.types import utcnow

#: At most this many on-time fires are made for one workflow in one go (a per-second schedule with a
#: long grace after a restart); the rest count as missed.
ON_TIME_CAP = 120
_TINY = timedelta(microseconds=1)
BUSY_STATUSES = (*ACTIVE_RUN_STATUSES, "waiting")


@dataclass
class Plan:
    runs: list[tuple[datetime, str]]  # (scheduled_for, trigger) in order
    next_fire_at: datetime | None
    completed: bool = False  # a one-off that has now fired (or been skipped)
    missed: dict[str, Any] | None = None  # fires later than grace, for the activity log


def plan(wf: dict[str, Any], due: datetime, now: datetime) -> Plan:
    """What firing `due` (the workflow's next_fire_at, <= now) means at `now`; pure."""
    edge = now - timedelta(seconds=float(wf["grace"]))
    policy = wf["misfire"]
    if wf["cron"] is None:  # a one-off (run_at)
        if due >= edge:
            return Plan([(due, "once")], None, completed=True)
        missed = {"first": due, "last": due, "policy": policy}
        return Plan([] if policy == "skip" else [(due, "catchup")], None, completed=True, missed=missed)
    cron, tz = wf["cron"], wf["timezone"]
    if due >= edge:
        on_time = [due, *schedule.fires_between(cron, tz, due, now, ON_TIME_CAP)]
        late: list[datetime] = []
    else:
        on_time = schedule.fires_between(cron, tz, edge - _TINY, now, ON_TIME_CAP)
        keep = {"skip": 0, "once": 1, "all": max(0, int(wf["max_catchup"]))}.get(policy, 0)
        late = schedule.fires_between(cron, tz, due - _TINY, edge - _TINY, keep) if keep else []
    missed = None
    if due < edge:
        last_missed = schedule.fires_between(cron, tz, due - _TINY, edge - _TINY, 1)
        missed = {"first": due, "last": last_missed[-1] if last_missed else due, "policy": policy,
                  "caught_up": len(late)}
    runs = [(t, "catchup") for t in late] + [(t, "cron") for t in on_time]
    return Plan(runs, schedule.next_fire(cron, now, tz), missed=missed)


@lru_cache(maxsize=4)
def run_insert(dialect: str) -> fast.Prepared:
    """INSERT of a run that does nothing when that fire's run exists already."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    keys = ("id", "organization_id", "workflow_id", "workflow_name", "trigger", "triggered_by", "scheduled_for",
            "queue", "status", "attempt", "max_attempts", "created_at", "finished_at", "error")
    stmt = insert(R).values({k: sa.bindparam(k, type_=R.c[k].type) for k in keys})
    return fast.Prepared(stmt.on_conflict_do_nothing(index_elements=["workflow_id", "scheduled_for"]))


# Prepared: a mass fire runs these once per workflow, thousands in a second.
_TAKE_FIRE = fast.Prepared(
    sa.update(W).where(W.c.id == sa.bindparam("_id"), W.c.next_fire_at == sa.bindparam("_due"))
    .values(next_fire_at=sa.bindparam("_next"), status=sa.bindparam("_status")))
_STATE = fast.Prepared(sa.select(W.c.status, W.c.next_fire_at).where(W.c.id == sa.bindparam("_id")))
#: What planning and making a fire read of a workflow (not its payload or counters).
_FIRE_COLUMNS = (W.c.id, W.c.organization_id, W.c.name, W.c.queue, W.c.retries, W.c.status, W.c.next_fire_at,
                 W.c.cron, W.c.timezone, W.c.run_at, W.c.grace, W.c.misfire, W.c.max_catchup, W.c.overlap)


@dataclass
class FireResult:
    send: list[tuple[str, str]] = field(default_factory=list)  # (run id, queue) to enqueue
    send_workflows: list[str] = field(default_factory=list)  # the workflow id of each of `send`
    next_fire: dict[str, datetime | None] = field(default_factory=dict)  # workflow id -> its next fire
    made: int = 0  # run rows written
    stale: int = 0  # fires another daemon (or an edit) got to first
    made_runs: list[tuple[str, str, str]] = field(default_factory=list)  # (organization, workflow, status)


def fire_due(conn: sa.Connection, items: list[tuple[str, datetime]], now: datetime) -> FireResult:
    """Make the due fires `items` (workflow id, the next_fire_at the caller saw) in this transaction."""
    out = FireResult()
    ids = [wf_id for wf_id, _ in items]
    rows: dict[str, dict[str, Any]] = {}
    busy: set[str] = set()
    for start in range(0, len(ids), 900):
        chunk = ids[start:start + 900]
        # FOR UPDATE (Postgres): a second daemon firing the same rows waits for this transaction and then
        # reads the moved next_fire_at, instead of failing the guard below row by row.
        rows.update((r.id, dict(r._mapping)) for r in conn.execute(
            sa.select(*_FIRE_COLUMNS).where(W.c.id.in_(chunk)).with_for_update()))
        busy.update(conn.execute(sa.select(R.c.workflow_id).distinct()
                                 .where(R.c.workflow_id.in_(chunk), R.c.status.in_(BUSY_STATUSES))).scalars())
    insert = run_insert(conn.dialect.name)
    plans: dict[tuple[Any, ...], Plan] = {}  # many workflows due together share a schedule: plan it once
    for wf_id, due in items:
        wf = rows.get(wf_id)
        if wf is None or wf["status"] != "active" or wf["next_fire_at"] != due:
            # Deleted, paused, edited or fired elsewhere since the caller looked: tell it what is true now.
            out.next_fire[wf_id] = wf["next_fire_at"] if wf and wf["status"] == "active" else None
            out.stale += 1
            continue
        key = (wf["cron"], wf["timezone"], float(wf["grace"]), wf["misfire"], wf["max_catchup"], due)
        p = plans.get(key)
        if p is None:
            p = plans[key] = plan(wf, due, now)
        status = "completed" if p.completed else "active"
        if not _TAKE_FIRE.rowcount(conn, {"_id": wf_id, "_due": due, "_next": p.next_fire_at, "_status": status}):
            now_row = _STATE.first(conn, {"_id": wf_id})  # another daemon took it between our read and update
            out.next_fire[wf_id] = now_row["next_fire_at"] if now_row and now_row["status"] == "active" else None
            out.stale += 1
            continue
        out.next_fire[wf_id] = p.next_fire_at
        was_busy = wf_id in busy
        for i, (scheduled_for, trigger) in enumerate(p.runs):
            _make_run(conn, insert, wf, scheduled_for, trigger, now, was_busy, i > 0, out)
            busy.add(wf_id)
        if p.missed:
            _record_missed(conn, wf, p.missed)
    return out


def _make_run(conn: sa.Connection, insert: fast.Prepared, wf: dict[str, Any], scheduled_for: datetime, trigger: str,
              now: datetime, busy: bool, behind: bool, out: FireResult) -> None:
    """`busy`: a run of the workflow was under way before this pass; `behind`: an earlier fire of this
    same pass (catch-ups and the on-time fire after them) is ahead of this one."""
    status, error, finished = "queued", None, None
    if busy and wf["overlap"] == "skip":
        status, finished = "skipped", now
        error = "skipped: the previous run of this workflow had not finished (overlap policy skip)"
    elif (busy or behind) and wf["overlap"] != "allow":
        # Fires made together (catch-ups) run one after another unless overlapping is allowed.
        status = "waiting"
    run_id = new_id()
    row = {"id": run_id, "organization_id": wf["organization_id"], "workflow_id": wf["id"],
           "workflow_name": wf["name"], "trigger": trigger, "triggered_by": "scheduler",
           "scheduled_for": scheduled_for, "queue": wf["queue"], "status": status, "attempt": 1,
           "max_attempts": wf["retries"] + 1, "created_at": now, "finished_at": finished, "error": error}
    if not insert.rowcount(conn, row):
        return  # this fire's run exists already
    out.made += 1
    out.made_runs.append((wf["organization_id"], wf["name"], status))
    if status == "queued":
        out.send.append((run_id, wf["queue"]))
        out.send_workflows.append(wf["id"])
    elif status == "skipped":
        local = scheduled_for.astimezone(schedule.zone(wf["timezone"])).strftime("%Y-%m-%d %H:%M:%S")
        activity.record(conn, wf["organization_id"], "scheduler", "fire.skipped", target=wf["name"], level="warning",
                        message=f"{wf['name']}: fire of {local} {wf['timezone']} skipped, the previous run is "
                                "still running (overlap policy skip)",
                        data={"run_id": run_id, "scheduled_for": scheduled_for.isoformat()})


def _record_missed(conn: sa.Connection, wf: dict[str, Any], missed: dict[str, Any]) -> None:
    zone = schedule.zone(wf["timezone"])

    def local(t: datetime) -> str:
        return t.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    span = local(missed["first"]) if missed["first"] == missed["last"] else \
        f"{local(missed['first'])} to {local(missed['last'])}"
    what = {"skip": "none run (misfire policy skip)",
            "once": "one catch-up run (misfire policy once)",
            "all": f"{missed.get('caught_up', 1)} catch-up run(s) (misfire policy all, at most "
                   f"{wf['max_catchup']})"}[missed["policy"]]
    activity.record(conn, wf["organization_id"], "scheduler", "fire.missed", target=wf["name"], level="warning",
                    message=f"{wf['name']} missed its fire(s) of {span} {wf['timezone']}: {what}",
                    data={"first": missed["first"].isoformat(), "last": missed["last"].isoformat(),
                          "policy": missed["policy"]})


_RELEASE_WAITING = (
    sa.update(R)
    .where(R.c.id == sa.select(R.c.id).where(R.c.workflow_id == sa.bindparam("_wf"), R.c.status == "waiting")
           .order_by(R.c.scheduled_for, R.c.id).limit(1).scalar_subquery(), R.c.status == "waiting")
    .values(status="queued")
    .returning(R.c.id, R.c.queue)
)


def paused_since_written(conn: sa.Connection, held: list[tuple[str, str]]) -> list[str]:
    """Of fires written ahead of their time, (run id, workflow id), the runs whose workflow was paused
    or deleted in the moment between: those are not to be sent. A read, so it does not wait for the writer."""
    status: dict[str, str] = {}
    wf_ids = sorted({wf_id for _, wf_id in held})
    for start in range(0, len(wf_ids), 900):
        status.update(conn.execute(sa.select(W.c.id, W.c.status).where(W.c.id.in_(wf_ids[start:start + 900]))).all())
    return [run_id for run_id, wf_id in held if status.get(wf_id) in (None, "paused")]


def skip_written_ahead(conn: sa.Connection, gone: list[str]) -> None:
    """Close the runs paused_since_written found as skipped (a deleted workflow's are failed already)."""
    for start in range(0, len(gone), 900):
        conn.execute(sa.update(R).where(R.c.id.in_(gone[start:start + 900]), R.c.status == "queued").values(
            status="skipped", finished_at=utcnow(),
            error="skipped: the workflow was paused in the moment between this fire being written and its time"))


def release_waiting(conn: sa.Connection, workflow_id: str) -> tuple[str, str] | None:
    """Let the oldest fire held by overlap policy `queue` go, if nothing of its workflow runs; (run id, queue)."""
    active = conn.execute(sa.select(R.c.id).where(R.c.workflow_id == workflow_id,
                                                  R.c.status.in_(ACTIVE_RUN_STATUSES)).limit(1)).first()
    if active is not None:
        return None
    row = conn.execute(_RELEASE_WAITING, {"_wf": workflow_id}).first()
    return (row.id, row.queue) if row else None


def due_entries(conn: sa.Connection) -> list[tuple[str, str, datetime | None]]:
    """(id, status, next_fire_at) of every scheduled workflow."""
    query = sa.select(W.c.id, W.c.status, W.c.next_fire_at).where(W.c.status == "active", W.c.next_fire_at.is_not(None))
    return [(r.id, r.status, r.next_fire_at) for r in conn.execute(query)]


def entries_of(conn: sa.Connection, ids: list[str]) -> dict[str, datetime | None]:
    """Workflow id -> its next fire if it is active and scheduled, else None (paused, completed, deleted)."""
    out: dict[str, datetime | None] = dict.fromkeys(ids)
    for start in range(0, len(ids), 900):  # older SQLite builds allow only 999 bound values per statement
        rows = conn.execute(sa.select(W.c.id, W.c.status, W.c.next_fire_at).where(W.c.id.in_(ids[start:start + 900])))
        out.update((r.id, r.next_fire_at if r.status == "active" else None) for r in rows)
    return out


# As stored, not converted: compared for equality only.
_STAMP = sa.type_coerce(W.c.updated_at, sa.String)


def stamps_since(conn: sa.Connection, since: datetime) -> dict[Any, int]:
    """updated_at as stored -> how many workflows carry it, for those changed at or after `since`.

    An index-only scan that returns one row per stamp, not per workflow: the workflows of one apply
    share theirs, so 100,000 freshly applied workflows are a few rows, not 100,000."""
    query = sa.select(_STAMP.label("stamp"), sa.func.count()).where(W.c.updated_at >= since).group_by(W.c.updated_at)
    return {stamp: count for stamp, count in conn.execute(query)}


def stamped(conn: sa.Connection, stamps: list[Any]) -> list[str]:
    """Ids of the workflows whose updated_at (as stored) is one of `stamps`."""
    out: list[str] = []
    for start in range(0, len(stamps), 900):
        out += conn.execute(sa.select(W.c.id).where(_STAMP.in_(stamps[start:start + 900]))).scalars()
    return out


# An apply of 10,000 workflows shares a handful of schedules and one `now`: each is worked out once.
@lru_cache(maxsize=4096)
def next_fire_once(cron: str, now: datetime, tz: str) -> datetime | None:
    """schedule.next_fire, remembered for the same arguments."""
    return schedule.next_fire(cron, now, tz)


_VALIDATED: dict[tuple[str, str], tuple[float, str]] = {}
#: A cron expression checked this recently is not checked again ("never fires" is a yearly pattern's
#: property, not the minute's).
VALIDATED_FOR_S = 60.0


def validate_cron_once(expr: str, tz: str, now: datetime) -> str:
    """schedule.validate_cron, not repeated for an expression checked within VALIDATED_FOR_S."""
    hit = _VALIDATED.get((expr, tz))
    if hit is not None and time.monotonic() - hit[0] < VALIDATED_FOR_S:
        return hit[1]
    normal = schedule.validate_cron(expr, tz, now)
    if len(_VALIDATED) > 4096:
        _VALIDATED.clear()
    _VALIDATED[expr, tz] = (time.monotonic(), normal)
    return normal
