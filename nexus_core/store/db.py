"""Engine set-up and the single writer thread that group-commits every write."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog

from nexus_core.errors import NexusError, UnavailableError

T = TypeVar("T")
log = structlog.get_logger("nexus.store")

WriteFn = Callable[..., Any]
_STOP = object()
MAX_BATCH = 256
#: New intake per batch: small enough that a worker's urgent write waits only a few milliseconds
#: behind a flood of triggers, large enough that the commit is shared.
MAX_INTAKE = 48


def normalize_url(url: str) -> str:
    """Accept the URLs operators write and pick the driver we ship (psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def create_engine(url: str) -> sa.Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                  pool_size=12, max_overflow=20)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Transactions are begun by the "begin" hook below, so the writer can take the lock up front.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            # IMMEDIATE for writers avoids the deadlock of two readers upgrading to writers.
            immediate = conn.get_execution_options().get("nexus_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Store:
    """The database: reads on pooled connections, writes through one group-committing thread."""

    def __init__(self, url: str):
        self.url = normalize_url(url)
        self.engine = create_engine(self.url)
        self._write_engine = self.engine.execution_options(nexus_write=True)
        # Two lanes: work already under way (a worker's claim or outcome) goes before new intake, so a
        # flood of triggers cannot starve the workers that would drain it.  `_wake` holds one token per
        # queued item; the writer blocks on it.
        self._urgent: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A connection for reading; its transaction is rolled back at the end."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise UnavailableError(f"database unavailable: {exc.orig}") from None

    def _ensure_writer(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._writer, name="nexus-writer", daemon=True)
                    self._thread.start()

    def submit(self, fn: WriteFn, *args: Any, urgent: bool = False) -> Future[Any]:
        """Queue `fn(conn, *args)` to run inside a write transaction; the future resolves after commit.

        `urgent` writes (progress of work already accepted) are taken before the others."""
        self._ensure_writer()
        fut: Future[Any] = Future()
        (self._urgent if urgent else self._queue).put((fn, args, fut))
        self._wake.put(None)
        return fut

    def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(conn, *args, **kwargs)` in a committed write transaction and return its result."""
        return self.submit(partial(fn, **kwargs) if kwargs else fn, *args).result()

    def write_urgent(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Like write(), ahead of queued non-urgent writes: for workers recording progress."""
        return self.submit(partial(fn, **kwargs) if kwargs else fn, *args, urgent=True).result()

    async def awrite(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.wrap_future(self.submit(partial(fn, **kwargs) if kwargs else fn, *args))

    async def aread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(conn, *args, **kwargs)` on a read connection in a thread."""

        def run() -> T:
            with self.read() as conn:
                return fn(conn, *args, **kwargs)

        return await asyncio.to_thread(run)

    def _writer(self) -> None:
        stopping = False
        while not stopping:
            self._wake.get()
            batch: list[Any] = []
            for lane, limit in ((self._urgent, MAX_BATCH), (self._queue, MAX_INTAKE)):
                while len(batch) < limit:
                    try:
                        item = lane.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        continue
                    batch.append(item)
            # One token was taken above; take the rest of this batch's (they are there: put after the item).
            for _ in range(len(batch) + (1 if stopping else 0) - 1):
                self._wake.get()
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[WriteFn, tuple[Any, ...], Future[Any]]]) -> None:
        hooks: list[Callable[[], Any]] = []
        if len(batch) > 1:
            try:
                results = []
                with self._write_engine.begin() as conn:
                    conn.info.pop("after_commit", None)
                    for fn, args, _ in batch:
                        results.append(fn(conn, *args))
                    hooks = conn.info.pop("after_commit", [])
            except Exception:
                # One bad write must not fail its neighbours: redo each in its own transaction.
                for entry in batch:
                    self._run_batch([entry])
                return
            for (_, _, fut), result in zip(batch, results):
                fut.set_result(result)
            self._after_commit(hooks)
            return
        fn, args, fut = batch[0]
        try:
            with self._write_engine.begin() as conn:
                conn.info.pop("after_commit", None)
                try:
                    result = fn(conn, *args)
                finally:
                    hooks = conn.info.pop("after_commit", [])
        except NexusError as exc:
            fut.set_exception(exc)
        except sa.exc.OperationalError as exc:
            log.warning("write failed", error=str(exc.orig))
            fut.set_exception(UnavailableError(f"database unavailable: {exc.orig}"))
        except BaseException as exc:  # noqa: BLE001 - the caller decides what an error means
            fut.set_exception(exc)
        else:
            fut.set_result(result)
            self._after_commit(hooks)

    @staticmethod
    def _after_commit(hooks: list[Callable[[], Any]]) -> None:
        for hook in hooks:
            try:
                hook()
            except Exception:  # noqa: BLE001 - a listener must never break the writer
                log.exception("after-commit hook failed")

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._wake.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        self.engine.dispose()
