"""The scheduler: a heap of next fire times, a thread that sleeps until the earliest, exactly-once fires.

Nothing here polls the workflows: at start the scheduler reads each scheduled workflow's stored
`next_fire_at` once (no cron arithmetic, so 100,000 workflows load in seconds), keeps them in a heap,
and sleeps until the earliest is due.  An RPC that creates, edits, pauses, resumes or deletes
workflows calls `changed(ids)` once its transaction has committed, which wakes the thread to re-read
exactly those rows.  Every RESYNC_SECONDS it also reads which workflows another daemon sharing the
database changed: a row's updated_at is stamped when its transaction starts and becomes visible only
at the commit, up to a long transaction later (a 10,000-workflow apply), so it looks RESYNC_LOOKBACK
back and re-reads the rows whose stamp it has not seen yet.
Firing is `nexus_core.services.fires.fire_due` in the store's writer, a chunk of due workflows per
transaction; a stale heap entry (edited, paused, fired elsewhere) is corrected there, never fired.
When more than FIRST_CHUNK workflows are due at the same instant, their run rows are written up to
AHEAD before it and the messages sent at the instant, so that writing them does not delay the runs;
a workflow paused in between is skipped then. Nothing is sent before its time.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog

from nexus_core.services import fires
from nexus_core.services.workflows import first_fire
from nexus_core.store.models import workflows_table as W
from nexus_core.store.types import utcnow

if TYPE_CHECKING:
    from nexus_core.store.db import Store

log = structlog.get_logger("nexus.scheduler")

#: Longest sleep: bounds how late a wall-clock jump forward is noticed, and the idle wake-up rate.
MAX_SLEEP_S = 5.0
#: How often rows changed by someone else (another daemon, `nexus db` tools) are picked up.
RESYNC_SECONDS = 30.0
#: How far before its last look a resync looks: far longer than any write transaction runs, so a change
#: committed long after it was stamped is still seen.
RESYNC_LOOKBACK = timedelta(minutes=5)
#: Due fires per write transaction: a small first one so the first runs start at once, then larger ones.
#: Each is a transaction of its own in the writer's bulk lane, so workers' claims are taken between them.
FIRST_CHUNK, CHUNK = 50, 100
#: A fire counts as due this much early: the sleep's own wake-up jitter, so no extra sleep of ~1 ms.
EARLY = timedelta(milliseconds=2)
#: How long before an instant with more than FIRST_CHUNK fires their run rows are written (sent at the instant).
#: Writing 1,000 fires takes ~0.15 s of the one writer; done at the instant, the last runs started that much later.
AHEAD = timedelta(milliseconds=500)

Enqueue = Callable[[str, int, str, float], None]


class Scheduler:
    def __init__(self, store: "Store", enqueue: Enqueue, *, metrics: Any = None,
                 on_change: Callable[[str, str, str], None] | None = None):
        self.store = store
        self.enqueue = enqueue
        self.metrics = metrics
        self.on_change = on_change  # on_change(organization, workflow name, "created" | "skipped")
        self._heap: list[tuple[datetime, str]] = []
        self._next: dict[str, datetime] = {}  # workflow id -> the fire its heap entry stands for
        self._at: Counter[datetime] = Counter()  # fire time -> how many workflows are due then
        self._cond = threading.Condition()
        self._dirty = False
        self._changed: set[str] = set()  # workflow ids to re-read, told by this daemon's RPC handlers
        self._stamps: dict[Any, int] = {}  # updated_at -> rows carrying it, for those within RESYNC_LOOKBACK
        self._stopping = False
        self._last_look: datetime | None = None
        self._last_resync = 0.0
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.fired = 0

    # -- control ----------------------------------------------------------------------------

    def start(self) -> None:
        """Load every scheduled workflow (blocking, so the daemon is ready only with its schedule loaded)."""
        self._load()
        self._thread = threading.Thread(target=self._loop, name="nexus-scheduler", daemon=True)
        self._thread.start()
        self.ready.set()

    def changed(self, ids: Iterable[str] | None = None) -> None:
        """Workflows were created, edited, paused, resumed or deleted (and committed): re-read them now.

        Without ids, everything changed within RESYNC_LOOKBACK is looked at."""
        with self._cond:
            if ids is None:
                self._dirty = True
            else:
                self._changed.update(ids)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def status(self) -> dict[str, Any]:
        top = self._peek()
        return {"scheduled": len(self._next), "next_fire_at": top[0].isoformat() if top else None,
                "fired": self.fired}

    # -- the heap -----------------------------------------------------------------------------

    def _set(self, wf_id: str, when: datetime | None) -> None:
        old = self._next.get(wf_id)
        if old == when:
            return
        if old is not None:
            self._uncount(old)
        if when is None:
            del self._next[wf_id]
            return
        self._next[wf_id] = when
        self._at[when] += 1
        heapq.heappush(self._heap, (when, wf_id))

    def _uncount(self, when: datetime) -> None:
        left = self._at[when] - 1
        if left > 0:
            self._at[when] = left
        else:
            del self._at[when]

    def _pop(self) -> tuple[datetime, str]:
        when, wf_id = heapq.heappop(self._heap)
        del self._next[wf_id]
        self._uncount(when)
        return when, wf_id

    def _wake_at(self, when: datetime) -> datetime:
        """When to start on the fires due at `when`: AHEAD before for a mass fire, else at the time."""
        return when - AHEAD if self._at[when] > FIRST_CHUNK else when - EARLY

    def _peek(self) -> tuple[datetime, str] | None:
        while self._heap:
            when, wf_id = self._heap[0]
            if self._next.get(wf_id) == when:
                return self._heap[0]
            heapq.heappop(self._heap)  # superseded or removed
        return None

    def _load(self) -> None:
        started = time.perf_counter()
        look = utcnow()
        with self.store.read() as conn:
            entries = fires.due_entries(conn)
            self._stamps = fires.stamps_since(conn, look - RESYNC_LOOKBACK)
            # Scheduled workflows without a stored next fire (written before the scheduler existed).
            missing = [dict(r._mapping) for r in conn.execute(
                sa.select(W.c.id, W.c.cron, W.c.timezone, W.c.run_at).where(
                    W.c.status == "active", W.c.next_fire_at.is_(None),
                    sa.or_(W.c.cron.is_not(None), W.c.run_at.is_not(None))))]
        if missing:
            filled = {m["id"]: first_fire(m, look) for m in missing}
            self.store.write(_fill_next_fire, filled)
            entries += [(wf_id, "active", when) for wf_id, when in filled.items() if when is not None]
        self._heap = [(when, wf_id) for wf_id, status, when in entries if when is not None]
        heapq.heapify(self._heap)
        self._next = {wf_id: when for when, wf_id in self._heap}
        self._at = Counter(self._next.values())
        self._last_look = look
        self._last_resync = time.monotonic()
        top = self._peek()
        log.info("schedule loaded", workflows=len(self._next), seconds=round(time.perf_counter() - started, 2),
                 next_fire_at=top[0].isoformat() if top else None)

    def _reload(self, ids: Iterable[str]) -> None:
        """Re-read these workflows and put what they now say in the heap (nothing for a deleted one)."""
        wanted = list(ids)
        if not wanted:
            return
        with self.store.read() as conn:
            found = fires.entries_of(conn, wanted)
        for wf_id, when in found.items():
            self._set(wf_id, when)

    def _resync(self) -> None:
        """What other daemons changed: rows stamped within RESYNC_LOOKBACK with a stamp new to us (or one
        that more or fewer rows carry than at our last look)."""
        look = utcnow()
        since = (self._last_look or look) - RESYNC_LOOKBACK
        with self.store.read() as conn:
            stamps = fires.stamps_since(conn, since)
            fresh = [stamp for stamp, count in stamps.items() if self._stamps.get(stamp) != count]
            ids = fires.stamped(conn, fresh) if fresh else []
        self._stamps = stamps
        self._reload(ids)
        self._last_look = look
        self._last_resync = time.monotonic()

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                dirty, self._dirty = self._dirty, False
                ids, self._changed = self._changed, set()
            try:
                if ids:
                    self._reload(ids)
                if dirty or time.monotonic() - self._last_resync >= RESYNC_SECONDS:
                    self._resync()
                if self._fire_due():
                    continue  # more may have come due meanwhile
            except Exception as exc:  # noqa: BLE001 - a database or Redis outage must not end scheduling
                log.warning("scheduler pass failed; retrying", error=str(exc))
                with self._cond:
                    self._changed.update(ids)  # not read yet: read them on the next pass
                    self._dirty = self._dirty or dirty
                    self._cond.wait(1.0)
                continue
            top = self._peek()
            wait = MAX_SLEEP_S
            if top is not None:
                wait = min(wait, max(0.0, (self._wake_at(top[0]) - utcnow()).total_seconds()))
            with self._cond:
                if not self._dirty and not self._changed and not self._stopping and wait > 0:
                    self._cond.wait(wait)

    def _fire_due(self) -> bool:
        now = utcnow()
        due: list[tuple[str, datetime]] = []
        top = self._peek()
        instant = None  # a mass fire's time, when it is being written ahead of it
        if top is not None and top[0] > now + EARLY and self._wake_at(top[0]) <= now:
            instant = top[0]
        while True:
            top = self._peek()
            if top is None or (top[0] != instant if instant else top[0] > now + EARLY):
                break
            when, wf_id = self._pop()
            due.append((wf_id, when))
        if not due:
            return False
        held: list[tuple[str, str, str]] = []  # (run id, queue, workflow id) written ahead, sent at `instant`

        def send_held() -> None:
            if not held:
                return
            with self.store.read() as conn:
                gone = set(fires.paused_since_written(conn, [(r, wf) for r, _, wf in held]))
            if gone:
                self.store.write(fires.skip_written_ahead, sorted(gone))
            for run_id, queue, _ in held:
                if run_id not in gone:
                    self.enqueue(run_id, 1, queue, 0.0)
            held.clear()

        starts = [0, *range(FIRST_CHUNK, len(due), CHUNK)] if len(due) > FIRST_CHUNK else [0]
        for n, start in enumerate(starts):
            chunk = due[start:starts[n + 1] if n + 1 < len(starts) else len(due)]
            # Due times up to EARLY ahead are fired as of their own time, never before it.
            at = max(utcnow(), max(when for _, when in chunk))
            try:
                result = self.store.write_bulk(fires.fire_due, chunk, at)
            except Exception:
                for wf_id, when in due[start:]:  # put them back; the loop retries after a pause
                    self._set(wf_id, when)
                send_held()  # written already: they must not wait for the retry
                raise
            if instant is not None and utcnow() < instant - EARLY:
                held += [(run_id, queue, wf_id) for (run_id, queue), wf_id in zip(result.send, result.send_workflows)]
            else:
                send_held()
                for run_id, queue in result.send:
                    self.enqueue(run_id, 1, queue, 0.0)
            if self.on_change:
                for org_id, name, status in result.made_runs:
                    self.on_change(org_id, name, "created")
                    if status == "skipped":
                        self.on_change(org_id, name, "skipped")
            for wf_id, when in result.next_fire.items():
                if wf_id not in self._next:
                    self._set(wf_id, when)
            self.fired += result.made
            if self.metrics and result.made:
                self.metrics.incr("scheduler.runs", result.made)
        if held:
            assert instant is not None
            time.sleep(max(0.0, (instant - utcnow()).total_seconds()))  # never sent before their time
            send_held()
        return True


def _fill_next_fire(conn: sa.Connection, filled: dict[str, datetime | None]) -> None:
    stmt = sa.update(W).where(W.c.id == sa.bindparam("_id"), W.c.next_fire_at.is_(None))
    rows = [{"_id": wf_id, "next_fire_at": when} for wf_id, when in filled.items() if when is not None]
    if rows:
        conn.execute(stmt, rows)
