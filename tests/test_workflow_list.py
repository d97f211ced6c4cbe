"""Listing workflows on SQLite reads the driver's rows directly: it must answer exactly what `public()` does."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from nexus_core.services import workflows as wf
from nexus_core.store import migrate
from nexus_core.store.db import Store
from nexus_core.store.models import orgs_table as O
from nexus_core.store.models import workflows_table as W


def test_the_fast_sqlite_list_answers_what_public_gives(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'n.db'}")
    migrate.upgrade(store.engine)
    now = datetime(2026, 12, 1, 9, 0, 0, tzinfo=timezone.utc)

    def setup(conn: sa.Connection) -> None:
        conn.execute(sa.insert(O).values(id="org1", name="default", created_at=now))
        conn.execute(sa.insert(O).values(id="org2", name="other", created_at=now))
        wf.create(conn, "org1", "alice", {"name": "plain", "kind": "noop", "queue": "automation", "timezone": "UTC"})
        wf.create(conn, "org1", "alice", {"name": "hook", "kind": "webhook", "queue": "webhook",
                                          "payload": {"url": "https://x.example/h", "secret": "s3cret"},
                                          "requires_approval": True, "cron": "*/5 * * * *",
                                          "timezone": "Europe/Berlin", "description": "with a secret"})
        wf.create(conn, "org1", "bob", {"name": "paused", "kind": "noop", "queue": "automation",
                                        "cron": "0 3 * * *", "timezone": "UTC"})
        wf.create(conn, "org2", "eve", {"name": "elsewhere", "kind": "noop", "queue": "automation", "timezone": "UTC"})
        conn.execute(sa.update(W).where(W.c.name == "paused").values(status="paused"))
        conn.execute(sa.update(W).where(W.c.name == "plain").values(
            last_run_at=now + timedelta(microseconds=123), last_run_status="failed", runs_succeeded=3,
            runs_failed=1, run_at=now + timedelta(days=1)))

    store.write(setup)
    with store.read() as conn:
        fast = wf.list_all(conn, "org1")
        slow = [wf.public(r) for r in conn.execute(sa.select(W).where(W.c.organization_id == "org1")
                                                    .order_by(W.c.name))]
        some = wf.list_all(conn, "org1", names=["hook", "nope"])
        paused = wf.list_all(conn, "org1", status="paused")
    store.close()
    assert fast == slow
    assert [w["name"] for w in fast] == ["hook", "paused", "plain"]  # sorted, other organizations left out
    hook = fast[0]
    assert hook["payload"]["secret"] == "***" and hook["requires_approval"] is True
    assert fast[1]["next_fire_at"] is None  # paused: nothing fires
    assert fast[2]["success_rate"] == 0.75 and fast[2]["last_run_at"].endswith(".000123+00:00")
    assert [w["name"] for w in some] == ["hook"] and [w["name"] for w in paused] == ["paused"]
