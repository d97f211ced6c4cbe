"""The scheduler sees changes committed long after they were stamped: its own (told by id) and other daemons'."""

from __future__ import annotations

import time
from datetime import timedelta

import sqlalchemy as sa

from nexus_core.services import workflows as wf_service
from nexus_core.store.db import Store
from nexus_core.store.models import new_id
from nexus_core.store.models import orgs_table as O
from nexus_core.store.models import workflows_table as W
from nexus_core.store.types import utcnow
from nexus_daemon.scheduler import Scheduler


def _scheduler(store: Store) -> Scheduler:
    sched = Scheduler(store, lambda *args: None)
    sched.start()
    return sched


def _long_apply(store: Store, count: int, started_ago: timedelta) -> list[str]:
    """Create workflows in one transaction as a big apply does: stamped when it started, `started_ago`."""
    org = new_id()

    def write(conn: sa.Connection) -> list[str]:
        conn.execute(sa.insert(O).values(id=org, name=f"o-{org}", created_at=utcnow()))
        ids = [wf_service.create(conn, org, "tester", {"name": f"wf-{i}", "kind": "noop", "queue": "automation",
                                                        "cron": "0 3 * * *", "timezone": "UTC", "payload": {}})["id"]
               for i in range(count)]
        conn.execute(sa.update(W).values(updated_at=utcnow() - started_ago))
        return ids

    return store.write(write)


def _wait_holds(sched: Scheduler, count: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while sched.status()["scheduled"] != count and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(sched.status()["scheduled"])


def test_changes_this_daemon_committed_are_read_by_id(store: Store) -> None:
    sched = _scheduler(store)
    try:
        sched.changed()  # a resync while the apply runs moves the last look past the rows' stamps
        ids = _long_apply(store, 50, started_ago=timedelta(seconds=30))
        sched.changed(ids)  # what the RPC handler does after the commit
        assert _wait_holds(sched, 50) == 50
    finally:
        sched.stop()


def test_another_daemon_sees_a_transaction_that_committed_long_after_it_started(store: Store, url: str) -> None:
    other = Store(url)
    sched = _scheduler(other)  # another daemon on the same database: nobody tells it which ids changed
    try:
        time.sleep(0.2)
        _long_apply(store, 50, started_ago=timedelta(seconds=30))
        sched.changed()  # its periodic resync, after the commit
        assert _wait_holds(sched, 50) == 50
        # What it has seen is remembered per stamp, so the next looks read nothing again.
        assert sum(sched._stamps.values()) == 50
    finally:
        sched.stop()
        other.close()
