"""Engine set-up, and the Store: pooled reads, writes through the single group-committing writer thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog

from nexus_core.errors import UnavailableError
from nexus_core.store.writer import BULK, INTAKE, URGENT, Entry, Slot, Writer

T = TypeVar("T")
log = structlog.get_logger("nexus.store")

WriteFn = Callable[..., Any]


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
            # On the driver's connection: the same statement without a SQLAlchemy execution around it.
            immediate = conn.get_execution_options().get("nexus_write")
            conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")  # type: ignore[union-attr]

        return engine
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Store:
    """The database: reads on pooled connections, writes through one group-committing thread."""

    def __init__(self, url: str):
        self.url = normalize_url(url)
        self.engine = create_engine(self.url)
        self._write_engine = self.engine.execution_options(nexus_write=True)
        self._writer: Writer | None = None
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

    def _put(self, entry: Entry, lane: int) -> None:
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    self._writer = Writer(self._write_engine)
        self._writer.put(entry, lane)

    def submit(self, fn: WriteFn, *args: Any, lane: int = INTAKE, **kwargs: Any) -> Future[Any]:
        """Queue `fn(conn, *args, **kwargs)` to run inside a write transaction; the future resolves after commit."""
        fut: Future[Any] = Future()
        self._put(Entry(fn, args, kwargs, fut, None), lane)
        return fut

    def _wait(self, lane: int, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        slot = Slot()
        self._put(Entry(fn, args, kwargs, slot, None), lane)
        return slot.result()  # type: ignore[no-any-return]

    def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(conn, *args, **kwargs)` in a committed write transaction and return its result."""
        return self._wait(INTAKE, fn, args, kwargs)

    def write_urgent(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Like write(), ahead of new work: for workers recording the progress of accepted runs."""
        return self._wait(URGENT, fn, args, kwargs)

    def write_urgent_later(self, done: Any, fn: WriteFn, *args: Any, **kwargs: Any) -> None:
        """Like write_urgent(), without waiting: after the commit the writer calls `done.set_result(result)`
        (or `done.set_exception(exc)`) on its own thread, so that call must only hand the result on."""
        self._put(Entry(fn, args, kwargs, done, None), URGENT)

    def write_bulk(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Like write(), for a long transaction: run on its own, between the batches of shorter writes."""
        return self._wait(BULK, fn, args, kwargs)

    async def awrite(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._awrite(INTAKE, fn, args, kwargs)

    async def awrite_bulk(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._awrite(BULK, fn, args, kwargs)

    async def _awrite(self, lane: int, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        # The writer settles a whole batch of a loop's futures with one call_soon_threadsafe.
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._put(Entry(fn, args, kwargs, fut, loop), lane)
        return await fut

    async def aread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(conn, *args, **kwargs)` on a read connection in a thread."""

        def run() -> T:
            with self.read() as conn:
                return fn(conn, *args, **kwargs)

        return await asyncio.to_thread(run)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        self.engine.dispose()
