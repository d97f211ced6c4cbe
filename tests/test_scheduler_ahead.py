"""A mass fire is written ahead of its second and sent at it: never early, and a pause in between still counts.

The scheduler runs in this process on a real store (SQLite, and Postgres when configured); its enqueue
records when each run was sent instead of talking to Redis.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from nexus_core.services import workflows as wf_service
from nexus_core.store.db import Store
from nexus_core.store.models import new_id
from nexus_core.store.models import orgs_table as O
from nexus_core.store.models import runs_table as R
from nexus_core.store.types import utcnow
from nexus_daemon import scheduler as scheduler_module
from nexus_daemon.scheduler import FIRST_CHUNK, Scheduler

COUNT = FIRST_CHUNK + 10  # more than one chunk: a mass fire


def _create(store: Store, second: datetime) -> tuple[str, list[str]]:
    """COUNT workflows that fire once a day at `second` (UTC); their organization and names."""
    org = new_id()
    cron = f"{second.minute} {second.hour} * * * {second.second}"
    names = [f"mass-{i:03d}" for i in range(COUNT)]

    def write(conn: sa.Connection) -> None:
        conn.execute(sa.insert(O).values(id=org, name=f"o-{org}", created_at=utcnow()))
        for name in names:
            wf_service.create(conn, org, "tester", {"name": name, "kind": "noop", "queue": "automation",
                                                    "cron": cron, "timezone": "UTC", "payload": {}})

    store.write(write)
    return org, names


def _runs(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(R.c.id, R.c.workflow_name, R.c.status,
                                                                  R.c.scheduled_for, R.c.error))]


def test_a_mass_fire_is_written_ahead_sent_at_its_second_and_a_pause_in_between_counts(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # A long lead, so that this test can pause a workflow between the writing and the second for sure.
    monkeypatch.setattr(scheduler_module, "AHEAD", timedelta(seconds=3))
    sent: list[tuple[datetime, str]] = []
    lock = threading.Lock()

    def enqueue(run_id: str, attempt: int, queue: str, delay: float) -> None:
        with lock:
            sent.append((datetime.now(timezone.utc), run_id))

    second = (utcnow() + timedelta(seconds=5)).replace(microsecond=0)
    org, names = _create(store, second)
    sched = Scheduler(store, enqueue)
    sched.start()
    try:
        deadline = time.monotonic() + 10
        while len(_runs(store)) < COUNT and time.monotonic() < deadline:
            time.sleep(0.02)
        written_at = utcnow()
        assert len(_runs(store)) == COUNT, "the fires were written ahead of their second"
        assert written_at < second - timedelta(seconds=0.5), f"written at {written_at}, due {second}"
        assert not sent, "nothing is sent before its second"

        # Paused after its fire was written, before the fire's second: that run must not go.
        paused = names[7]

        def pause(conn: sa.Connection) -> None:
            wf_service.set_status(conn, org, "tester", paused, "paused")

        store.write(pause)
        while utcnow() < second + timedelta(seconds=1):
            time.sleep(0.05)
    finally:
        sched.stop()

    runs = {r["workflow_name"]: r for r in _runs(store)}
    assert len(runs) == COUNT and all(r["scheduled_for"] == second for r in runs.values())
    assert runs[paused]["status"] == "skipped" and "paused" in runs[paused]["error"]
    by_id = {r["id"]: r for r in runs.values()}
    assert sorted(by_id[run_id]["workflow_name"] for _, run_id in sent) == sorted(n for n in names if n != paused)
    early = [(at, run_id) for at, run_id in sent if at < second]
    assert not early, f"sent before {second}: {early[:3]}"
    assert max(at for at, _ in sent) < second + timedelta(seconds=0.5)
