"""Recovery: finish what a killed daemon or worker left behind, and resend messages Redis lost."""

from __future__ import annotations

import os
import socket
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog

from nexus_core.services import fires
from nexus_core.services import runs as run_service
from nexus_core.store.models import runs_table as R
from nexus_core.store.models import workers_table as WP
from nexus_core.store.types import utcnow

if TYPE_CHECKING:
    from nexus_core.store.db import Store
    from nexus_daemon.broker import NexusRedisBroker
    from nexus_daemon.dispatcher import Sender

log = structlog.get_logger("nexus.recovery")
HEARTBEAT_SECONDS = 5.0
DEAD_AFTER = timedelta(seconds=30)
SETTLE = timedelta(seconds=10)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def heartbeat(store: "Store", worker_id: str, queues: tuple[str, ...], *, stopped: bool = False) -> None:
    """Record that this worker process is alive (or has stopped cleanly)."""
    host, pid, _ = worker_id.rsplit(":", 2)
    now = utcnow()

    def write(conn: sa.Connection) -> None:
        values = {"last_seen_at": now, "stopped_at": now if stopped else None}
        if not conn.execute(sa.update(WP).where(WP.c.id == worker_id).values(**values)).rowcount:
            conn.execute(sa.insert(WP).values(id=worker_id, host=host, pid=int(pid), queues=",".join(queues),
                                              started_at=now, **values))

    store.write(write)


def live_workers(conn: sa.Connection) -> list[dict[str, Any]]:
    """Worker processes that have beaten recently and whose process, when on this host, still exists."""
    cutoff = utcnow() - DEAD_AFTER
    rows = conn.execute(sa.select(WP).where(WP.c.stopped_at.is_(None), WP.c.last_seen_at >= cutoff))
    here = socket.gethostname()[:40]
    return [dict(r._mapping) for r in rows if r.host != here or _pid_alive(r.pid)]


def recover(store: "Store", broker: "NexusRedisBroker", sender: "Sender", own_worker_id: str, *,
            startup: bool, on_change: Callable[[str, str, str], None] | None = None) -> dict[str, int]:
    """Interrupt runs whose worker is gone, hand back the messages it had fetched, and resend queued runs
    whose message is not in Redis. `on_change(org_id, workflow, status)` hears of each interrupted run's
    new state (retrying, failed or dead), as the workers' own outcomes are heard."""
    # Redis before the database: a worker that starts in between must show up in `alive`, not only in `holders`.
    holders = broker.ack_holders()
    with store.read() as conn:
        pending = run_service.unfinished(conn)
        alive = {w["id"] for w in live_workers(conn)} | {own_worker_id}
        # Brokers are named after their worker process; ids the workers table does not know are left to Dramatiq.
        known = set(conn.execute(sa.select(WP.c.id).where(WP.c.id.in_(list(holders)))).scalars()
                    ) if holders else set()
        # Runs accepted a moment ago may still be on their way to Redis; leave them be.
        recent = set() if startup else set(conn.execute(
            sa.select(R.c.id).where(R.c.status == "queued", R.c.created_at >= utcnow() - SETTLE)).scalars())
    counts = {"interrupted": 0, "requeued": 0, "resent": 0}
    now = utcnow()
    by_queue: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in pending:
        if run["status"] == "running":
            if run["worker_id"] in alive:
                continue
            outcome = store.write(run_service.interrupt, run["id"],
                                  "interrupted: the worker running this attempt stopped (daemon killed or crashed)")
            counts["interrupted"] += 1
            if outcome and on_change is not None and outcome["status"] != "stale":
                on_change(outcome["organization_id"], outcome["workflow_name"], outcome["status"])
            if outcome and outcome["status"] == "retrying":
                sender.enqueue(run["id"], outcome["attempt"], run["queue"],
                               max(0.0, (outcome["due"] - now).total_seconds()))
            if outcome and outcome.get("released"):
                sender.enqueue(outcome["released"][0], 1, outcome["released"][1])
        elif run["id"] not in recent:
            by_queue[run["queue"]].append(run)
    # A killed worker's prefetched and delayed messages sit in its ack sets, where they count as present
    # but nobody will deliver them until Dramatiq's own maintenance, minutes later: put them back now.
    if known - alive:
        counts["requeued"] = broker.requeue_abandoned(known - alive)
    for queue_name, runs in by_queue.items():
        ids = {run_service.message_id(r["id"], r["attempt"]): r for r in runs}
        present = broker.message_ids_present(queue_name, list(ids))
        for mid, run in ids.items():
            if mid in present:
                continue
            delay = max(0.0, (run["next_attempt_at"] - now).total_seconds()) if run["next_attempt_at"] else 0.0
            sender.enqueue(run["id"], run["attempt"], queue_name, delay)
            counts["resent"] += 1
    # Fires held by overlap policy `queue` whose predecessor ended without releasing them (a crash
    # between the two, or a run that was deleted): let the oldest of each go.
    with store.read() as conn:
        held = list(conn.execute(sa.select(R.c.workflow_id).distinct().where(R.c.status == "waiting")).scalars())
    for workflow_id in held:
        released = store.write(fires.release_waiting, workflow_id)
        if released:
            sender.enqueue(released[0], 1, released[1])
            counts["released"] = counts.get("released", 0) + 1
    if any(counts.values()):
        log.info("recovered runs", **counts, startup=startup)
    return counts
