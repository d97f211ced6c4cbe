"""The store's single writer thread: three lanes by priority, group commit, writes run for many callers at once.

Lanes, in the order the writer serves them:
- urgent: progress of work already accepted (a worker's claim and outcome), so the workers that drain
  the queues are never starved by new work;
- intake: new work and ordinary changes (triggers, edits, heartbeats), at most MAX_INTAKE per commit;
- bulk: long transactions (a chunk of scheduled fires, a big apply), each in a transaction of its
  own and one per cycle, so a claim never waits behind more than one of them.
A write function marked with `batched(many)` is run for every caller in the batch by one `many` call,
which shares the statements' fixed costs (a workflow read once, inserts as one executemany).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from typing import Any

import sqlalchemy as sa
import structlog

from nexus_core.errors import NexusError, UnavailableError

log = structlog.get_logger("nexus.store")

URGENT, INTAKE, BULK = 0, 1, 2
MAX_BATCH = 256
#: New intake per batch: small enough that a worker's urgent write waits only a few milliseconds
#: behind a flood of triggers, large enough that the commit is shared.
MAX_INTAKE = 48
#: A connection idle this long is checked before it is used again (a restarted Postgres, a dropped link).
IDLE_PING_S = 1.0
#: SQLite: the WAL is checkpointed at most this often while writes go on (~2 MB of WAL at 1,000 runs/s).
CHECKPOINT_S = 0.5
_STOP = object()


class Failed:
    """What a `many` function returns for one caller whose write it refused (it wrote nothing for that caller)."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


Calls = list[tuple[tuple[Any, ...], dict[str, Any]]]


def batched(many: Callable[[sa.Connection, Calls], list[Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a write function that the writer may run for several callers at once through `many(conn, calls)`.

    `many` must do what calling the function once per call, in order, would do, and return one result
    (or a `Failed`) per call."""
    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.many = many  # type: ignore[attr-defined]
        return fn

    return mark


class Slot:
    """Where a blocked caller waits for its write: a bare lock, cheaper to hand over than a Future."""

    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._value: Any = None

    def set(self, value: Any) -> None:
        self._value = value
        self._lock.release()

    def result(self) -> Any:
        with self._lock:
            value = self._value
        if isinstance(value, Failed):
            raise value.exc
        return value


class Entry:
    __slots__ = ("fn", "args", "kwargs", "fut", "loop")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], fut: Any,
                 loop: asyncio.AbstractEventLoop | None):
        self.fn, self.args, self.kwargs, self.fut, self.loop = fn, args, kwargs, fut, loop


class Writer:
    """The thread that owns every write transaction of one engine."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._lanes: tuple[queue.SimpleQueue[Any], ...] = (queue.SimpleQueue(), queue.SimpleQueue(), queue.SimpleQueue())
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()  # one token per queued entry
        self._conn: sa.Connection | None = None
        self._used = 0.0
        self._checkpointer = Checkpointer(engine) if engine.dialect.name == "sqlite" else None
        self._thread = threading.Thread(target=self._loop, name="nexus-writer", daemon=True)
        self._thread.start()

    def put(self, entry: Entry, lane: int) -> None:
        self._lanes[lane].put(entry)
        self._wake.put(None)  # after the entry, so a token always finds its entry

    def stop(self, timeout: float = 30) -> None:
        self._lanes[INTAKE].put(_STOP)
        self._wake.put(None)
        self._thread.join(timeout=timeout)

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        stopping = False
        urgent, intake, bulk = self._lanes
        while not stopping:
            self._wake.get()
            batch: list[Entry] = []
            taken = 0
            for lane, limit in ((urgent, MAX_BATCH), (intake, MAX_INTAKE)):
                while len(batch) < limit:
                    try:
                        item = lane.get_nowait()
                    except queue.Empty:
                        break
                    taken += 1
                    if item is _STOP:
                        stopping = True
                        continue
                    batch.append(item)
            long: Entry | None = None
            try:
                long = bulk.get_nowait()
                taken += 1
            except queue.Empty:
                pass
            for _ in range(taken - 1):  # one token was taken above; the others are there (put after their entry)
                self._wake.get()
            if batch:
                self._run(batch)
            if long is not None:
                self._run([long])
        # Drain what is left so no caller waits forever on a writer that has stopped.
        for lane in self._lanes:
            while True:
                try:
                    item = lane.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    self._run([item])
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._checkpointer is not None:
            self._checkpointer.stop()

    def _connection(self) -> sa.Connection:
        """The writer's own connection, kept between batches (no pool checkout and reset per commit)."""
        conn = self._conn
        if conn is not None and (conn.invalidated or conn.closed):
            conn.close()
            conn = self._conn = None
        if conn is not None and self._checkpointer is None and time.monotonic() - self._used > IDLE_PING_S:
            try:  # what the pool's pre-ping did for every checkout: notice a server that went away while idle
                conn.exec_driver_sql("SELECT 1")
                conn.rollback()
            except sa.exc.DBAPIError:
                conn.close()
                conn = self._conn = None
        if conn is None:
            conn = self._conn = self.engine.connect()
            if self._checkpointer is not None:
                # Its commits no longer copy the WAL into the database file (~0.3 ms a commit at 1,000
                # pages of WAL): the checkpointer thread does that beside it.
                conn.connection.dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")  # type: ignore[union-attr]
        self._used = time.monotonic()
        return conn

    def _run(self, batch: list[Entry]) -> None:
        hooks: list[Callable[[], Any]] = []
        try:
            conn = self._connection()
            with conn.begin():
                conn.info.pop("after_commit", None)
                try:
                    results = self._apply(conn, batch)
                finally:
                    hooks = conn.info.pop("after_commit", [])
        except BaseException as exc:  # noqa: BLE001 - the caller decides what an error means
            if len(batch) > 1:
                # One bad write must not fail its neighbours: redo each in its own transaction.
                for entry in batch:
                    self._run([entry])
                return
            if isinstance(exc, sa.exc.OperationalError) and not isinstance(exc, NexusError):
                log.warning("write failed", error=str(exc.orig))
                exc = UnavailableError(f"database unavailable: {exc.orig}")
            _settle(batch, [Failed(exc)])
            return
        _settle(batch, results)
        if self._checkpointer is not None:
            self._checkpointer.nudge()
        for hook in hooks:
            try:
                hook()
            except Exception:  # noqa: BLE001 - a listener must never break the writer
                log.exception("after-commit hook failed")

    @staticmethod
    def _apply(conn: sa.Connection, batch: list[Entry]) -> list[Any]:
        """Run every entry of the batch on `conn`; a function marked `batched` once for all its entries."""
        results: list[Any] = [None] * len(batch)
        groups: dict[Any, list[int]] = {}
        for i, entry in enumerate(batch):
            if getattr(entry.fn, "many", None) is not None:
                groups.setdefault(entry.fn, []).append(i)
        done: set[Any] = set()
        for i, entry in enumerate(batch):
            group = groups.get(entry.fn)
            if group is not None and len(group) > 1:
                if entry.fn in done:
                    continue
                done.add(entry.fn)
                out = entry.fn.many(conn, [(batch[j].args, batch[j].kwargs) for j in group])
                for j, value in zip(group, out, strict=True):
                    results[j] = value
            else:
                results[i] = entry.fn(conn, *entry.args, **entry.kwargs)
        return results


class Checkpointer:
    """SQLite: copies the WAL into the database file on its own connection, after commits, at most every CHECKPOINT_S."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nexus-checkpoint", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        self._due.set()

    def stop(self) -> None:
        self._stopping.set()
        self._due.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            self._due.wait()  # nothing written, nothing to do: an idle store costs no wake-ups
            if self._stopping.is_set():
                return
            self._due.clear()
            try:
                raw = self.engine.raw_connection()
                try:
                    # PASSIVE: copies what no reader still needs, never waits for readers or the writer.
                    raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
                finally:
                    raw.close()
            except Exception as exc:  # noqa: BLE001 - the next commit nudges it again
                log.warning("checkpoint failed", error=str(exc))
            self._stopping.wait(CHECKPOINT_S)


def _settle(batch: list[Entry], results: list[Any]) -> None:
    """Hand each caller its result: concurrent futures directly, a loop's futures in one call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any]]] = {}
    for entry, value in zip(batch, results):
        if entry.loop is not None:
            by_loop.setdefault(entry.loop, []).append((entry.fut, value))
            continue
        if type(entry.fut) is Slot:
            entry.fut.set(value)
            continue
        try:
            if isinstance(value, Failed):
                entry.fut.set_exception(value.exc)
            else:
                entry.fut.set_result(value)
        except InvalidStateError:
            pass  # the caller cancelled; the write stands
    for loop, pairs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_on_loop, pairs)
        except RuntimeError:
            pass  # the loop has closed: nobody is waiting any more


def _settle_on_loop(pairs: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for fut, value in pairs:
        if fut.done():
            continue  # cancelled (the client went away); the write stands
        if isinstance(value, Failed):
            fut.set_exception(value.exc)
        else:
            fut.set_result(value)
