"""The store's writer: lanes, batched writes, failures kept to their caller; prepared statements; the run's hot path."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from nexus_core.errors import ConflictError, NotFoundError
from nexus_core.services import activity, lifecycle
from nexus_core.services import workflows as wf_service
from nexus_core.store import fast, migrate
from nexus_core.store.db import Store
from nexus_core.store.models import activity_table as A
from nexus_core.store.models import new_id
from nexus_core.store.models import orgs_table as O
from nexus_core.store.models import runs_table as R
from nexus_core.store.models import workflows_table as W
from nexus_core.store.types import utcnow
from nexus_core.store.writer import Failed, batched


@pytest.fixture
def store(home: Any, database_url: str | None) -> Iterator[Store]:
    s = Store(database_url or f"sqlite:///{home}/nexus.db")
    migrate.upgrade(s.engine)
    yield s
    s.close()


@pytest.fixture
def org(store: Store) -> str:
    org_id = new_id()
    store.write(lambda c: c.execute(sa.insert(O).values(id=org_id, name=f"o-{org_id}", created_at=utcnow())))
    return org_id


def _workflow(store: Store, org: str, name: str = "wf", **extra: Any) -> dict[str, Any]:
    values = {"name": name, "kind": "noop", "queue": "automation", "timezone": "UTC", "payload": {}, **extra}
    return store.write(wf_service.create, org, "tester", values)


def _hold_writer(store: Store) -> threading.Event:
    """Keep the writer busy in a write until the returned event is set, so later writes pile up."""
    entered, release = threading.Event(), threading.Event()

    def block(conn: sa.Connection) -> None:
        entered.set()
        release.wait(10)

    threading.Thread(target=store.write, args=(block,), daemon=True).start()
    assert entered.wait(10)
    return release


def test_batched_write_runs_once_for_callers_that_came_together(store: Store) -> None:
    calls: list[int] = []

    def many(conn: sa.Connection, batch: list[Any]) -> list[Any]:
        calls.append(len(batch))
        return [Failed(NotFoundError("no such thing")) if args[0] < 0 else args[0] * 2 for args, _ in batch]

    @batched(many)
    def double(conn: sa.Connection, x: int) -> int:
        return x * 2

    release = _hold_writer(store)
    futures = [store.submit(double, x) for x in (1, 2, -1, 3)]
    release.set()
    assert [f.result(10) for f in (futures[0], futures[1], futures[3])] == [2, 4, 6]
    with pytest.raises(NotFoundError):
        futures[2].result(10)
    assert calls == [4]  # one call for the four callers


def test_a_failing_write_does_not_fail_its_neighbours(store: Store, org: str) -> None:
    def boom(conn: sa.Connection) -> None:
        conn.execute(sa.insert(A).values(organization_id=org, at=utcnow(), action="a", actor="t", message="", data={}))
        raise RuntimeError("broken write")

    def good(conn: sa.Connection, i: int) -> int:
        activity.record(conn, org, "t", f"good.{i}")
        return i

    release = _hold_writer(store)
    futures = [store.submit(good, 1), store.submit(boom), store.submit(good, 2)]
    release.set()
    assert futures[0].result(10) == 1 and futures[2].result(10) == 2
    with pytest.raises(RuntimeError):
        futures[1].result(10)
    with store.read() as conn:
        actions = sorted(conn.execute(sa.select(A.c.action)).scalars())
    assert actions == ["good.1", "good.2"]  # the failed write's insert was rolled back alone


def test_urgent_writes_go_first_and_a_bulk_write_runs_on_its_own(store: Store) -> None:
    order: list[str] = []
    transactions: dict[str, Any] = {}

    def note(conn: sa.Connection, label: str) -> None:
        order.append(label)
        transactions[label] = conn.get_transaction()

    release = _hold_writer(store)
    futures = [store.submit(note, "bulk", lane=2), store.submit(note, "intake"), store.submit(note, "urgent", lane=0)]
    release.set()
    for f in futures:
        f.result(10)
    assert order == ["urgent", "intake", "bulk"]
    assert transactions["urgent"] is transactions["intake"]
    assert transactions["bulk"] is not transactions["intake"]  # the bulk write had a transaction of its own


async def test_awrite_settles_on_the_loop_and_survives_a_cancelled_caller(store: Store, org: str) -> None:
    release = _hold_writer(store)
    task = asyncio.ensure_future(store.awrite(activity.record, org, "t", "cancelled.caller"))
    others = [asyncio.ensure_future(store.awrite(activity.record, org, "t", f"ok.{i}")) for i in range(3)]
    await asyncio.sleep(0.05)
    task.cancel()
    release.set()
    results = await asyncio.gather(*others)
    assert [r["action"] for r in results] == ["ok.0", "ok.1", "ok.2"]
    assert (await store.awrite(lambda c: 42)) == 42  # the writer is still alive


def test_prepared_statements_write_what_sqlalchemy_writes(store: Store, org: str) -> None:
    """Datetimes must come out byte for byte as SQLAlchemy's own: guards compare them (next_fire_at == due)."""
    wf = _workflow(store, org)
    when = datetime(2026, 3, 29, 3, 30, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    by_hand = fast.Prepared(sa.update(W).where(W.c.id == sa.bindparam("_id"), W.c.next_fire_at == sa.bindparam("_due"))
                            .values(next_fire_at=sa.bindparam("_next")))
    store.write(lambda c: c.execute(sa.update(W).where(W.c.id == wf["id"]).values(next_fire_at=when)))
    changed = store.write(lambda c: by_hand.rowcount(c, {"_id": wf["id"], "_due": when, "_next": when + timedelta(1)}))
    assert changed == 1
    read = fast.Prepared(sa.select(W.c.next_fire_at, W.c.payload, W.c.requires_approval).where(W.c.id == sa.bindparam("_id")))
    with store.read() as conn:
        row = read.first(conn, {"_id": wf["id"]})
        plain = conn.execute(sa.select(W.c.next_fire_at, W.c.payload, W.c.requires_approval).where(W.c.id == wf["id"])).one()
    assert row == dict(plain._mapping)
    assert row["next_fire_at"] == when + timedelta(1) and row["next_fire_at"].tzinfo is not None
    with pytest.raises(ValueError, match="naive"):
        store.write(lambda c: by_hand.rowcount(c, {"_id": wf["id"], "_due": datetime(2026, 1, 1), "_next": None}))


def test_the_hot_path_batched_is_the_hot_path_one_by_one(store: Store, org: str) -> None:
    _workflow(store, org, "plain")
    _workflow(store, org, "guarded", requires_approval=True)
    release = _hold_writer(store)
    futures = [store.submit(lifecycle.trigger, org, name, "tester") for name in ("plain", "missing", "guarded", "plain")]
    futures.append(store.submit(lifecycle.trigger, org, "guarded", "tester", "manual", "confirmed"))
    release.set()
    made = [futures[i].result(10) for i in (0, 3, 4)]
    with pytest.raises(NotFoundError):
        futures[1].result(10)
    with pytest.raises(ConflictError):
        futures[2].result(10)

    release = _hold_writer(store)
    claims = [store.submit(lifecycle.claim, run["id"], 1, "w1") for run in made]
    claims.append(store.submit(lifecycle.claim, made[0]["id"], 1, "w2"))  # a second delivery of the same attempt
    release.set()
    claimed = [c.result(10) for c in claims]
    assert claimed[3] is None and all(c is not None for c in claimed[:3])
    assert claimed[0]["workflow"]["name"] == "plain" and claimed[2]["workflow"]["name"] == "guarded"

    release = _hold_writer(store)
    outcomes = [store.submit(lifecycle.finish, claimed[0]["run"], ok=True, started_at=claimed[0]["started_at"]),
                store.submit(lifecycle.finish, claimed[1]["run"], ok=False, started_at=claimed[1]["started_at"],
                             error="boom", retryable=False),
                store.submit(lifecycle.finish, claimed[2]["run"], ok=True, started_at=claimed[2]["started_at"]),
                store.submit(lifecycle.finish, claimed[0]["run"], ok=True, started_at=claimed[0]["started_at"])]
    release.set()
    assert [o.result(10)["status"] for o in outcomes] == ["succeeded", "failed", "succeeded", "stale"]

    with store.read() as conn:
        runs = {r.id: r for r in conn.execute(sa.select(R))}
        counters = {r.name: (r.runs_succeeded, r.runs_failed, r.last_run_status)
                    for r in conn.execute(sa.select(W.c.name, W.c.runs_succeeded, W.c.runs_failed, W.c.last_run_status))}
        attempts = conn.execute(sa.text("SELECT count(*) FROM run_attempts")).scalar_one()
        actions = list(conn.execute(sa.select(A.c.action).order_by(A.c.id)).scalars())
    assert [runs[r["id"]].status for r in made] == ["succeeded", "failed", "succeeded"]
    assert counters["plain"] == (1, 1, "failed") and counters["guarded"] == (1, 0, "succeeded")
    assert attempts == 3
    assert actions.count("workflow.triggered") == 3 and actions.count("run.failed") == 1


def test_a_batch_of_outcomes_counts_every_success_and_lets_a_held_fire_go_once(store: Store, org: str) -> None:
    """Claims and successes of one batch are written set-wise: each claim still gets its own answer, a
    workflow's counters count all its successes, and a fire held behind them is released once."""
    _workflow(store, org, "busy")
    _workflow(store, org, "other")
    runs = [store.write(lifecycle.trigger, org, "busy", "tester") for _ in range(3)]
    other = store.write(lifecycle.trigger, org, "other", "tester")
    held = runs.pop()
    store.write(lambda c: c.execute(sa.update(R).where(R.c.id == held["id"]).values(status="waiting")))

    release = _hold_writer(store)
    claims = [store.submit(lifecycle.claim, run["id"], 1, "w1") for run in (*runs, other)]
    claims.append(store.submit(lifecycle.claim, other["id"], 2, "w1"))  # an attempt the run is not at
    claims.append(store.submit(lifecycle.claim, held["id"], 1, "w1"))  # held back: not claimable
    release.set()
    claimed = [c.result(10) for c in claims]
    assert [c is not None for c in claimed] == [True, True, True, False, False]
    assert {c["run"]["id"] for c in claimed[:3]} == {runs[0]["id"], runs[1]["id"], other["id"]}
    assert len({c["started_at"] for c in claimed[:3]}) == 1, "one transaction claims the batch at one instant"

    release = _hold_writer(store)
    outcomes = [store.submit(lifecycle.finish, c["run"], ok=True, started_at=c["started_at"], output=f"out {i}")
                for i, c in enumerate(claimed[:3])]
    release.set()
    results = [o.result(10) for o in outcomes]
    assert [r["status"] for r in results] == ["succeeded"] * 3
    assert [r["released"] for r in results] == [None, (held["id"], "automation"), None], \
        "the held fire goes once, with the workflow's last outcome of the batch"

    with store.read() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(R))}
        counters = {r.name: (r.runs_succeeded, r.last_run_status)
                    for r in conn.execute(sa.select(W.c.name, W.c.runs_succeeded, W.c.last_run_status))}
    assert counters == {"busy": (2, "succeeded"), "other": (1, "succeeded")}
    assert [rows[c["run"]["id"]].output for c in claimed[:3]] == ["out 0", "out 1", "out 2"]
    assert all(rows[c["run"]["id"]].duration_ms >= 0 for c in claimed[:3])
    assert rows[held["id"]].status == "queued"
