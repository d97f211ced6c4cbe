"""Shared by the Nexus benchmarks: a real daemon in a temp folder, a pipelining RPC client, store readings, cleanup.

A benchmark does:

    args = parser.parse_args()          # after add_common_args(parser)
    with BenchDaemon(args.redis, args.database) as nx:
        ...  nx.rpc() / nx.db() / nx.redis_url / nx.pid / nx.redis_pid ...

Without --redis the daemon runs its embedded Redis (a private redis-server on a Unix socket in the
data folder) and bare-Dramatiq baselines use that same server; with --redis URL both use that Redis,
each under its own key namespace, deleted afterwards.  Without --database the daemon uses SQLite in its
data folder; with --database postgresql://... a fresh database nexus_bench_<random> is created on that
server for the run and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repo, for nexus_core / nexus_daemon
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, for _baseline

import sqlalchemy as sa  # noqa: E402

from nexus_core import __version__  # noqa: E402
from nexus_core.rpc.protocol import PROTOCOL_VERSION  # noqa: E402
from nexus_core.store.db import normalize_url  # noqa: E402
from nexus_core.testing import DaemonProcess, cleanup, short_tempdir  # noqa: E402

from _proc import cpu_seconds  # noqa: E402



def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", metavar="URL",
                        help="redis:// or unix:// URL for the daemon and the baseline (default: the daemon's "
                             "embedded Redis)")
    parser.add_argument("--database", metavar="URL",
                        help="database for the daemon (default: SQLite in its data folder); with a "
                             "postgresql:// URL a fresh database is created on that server and dropped after")
    parser.add_argument("--worker-threads", type=int, default=None,
                        help="NEXUS_WORKER_THREADS for the daemon (default: the daemon's own default)")
    parser.add_argument("--keep", action="store_true", help="keep the daemon's data folder (and log) afterwards")


def describe_machine() -> str:
    load = os.getloadavg()
    return f"cpus={os.cpu_count()} load={load[0]:.2f},{load[1]:.2f},{load[2]:.2f} python={sys.version.split()[0]}"


# -- Postgres: a fresh database per run -------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    return sa.engine.make_url(normalize_url(url)).set(database=name).render_as_string(hide_password=False)


def create_postgres_database(url: str) -> tuple[str, str]:
    """Create nexus_bench_<random> on the server of `url`; returns (its URL, its name)."""
    name = f"nexus_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(normalize_url(url), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return _with_database(url, name), name


def drop_postgres_database(url: str, name: str) -> None:
    admin = sa.create_engine(normalize_url(url), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


# -- RPC ---------------------------------------------------------------------------------------


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]):
        super().__init__(error.get("message", "rpc error"))
        self.error = error


@dataclass
class Answer:
    """One answered request of a pipeline: when it was sent and answered (time.time()), and what came back."""

    sent: float
    answered: float
    result: Any = None
    error: dict[str, Any] | None = None


class Rpc:
    """One JSON-RPC connection that can pipeline: many requests in flight, answers matched by id."""

    def __init__(self, socket_path: Path | str, timeout: float = 120.0, client_name: str = "nexus-bench"):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(socket_path))
        self.buf = b""
        self.next_id = 0
        self.hello = self.call("system.handshake",
                               {"protocol": PROTOCOL_VERSION, "client": client_name, "version": __version__})

    def _encode(self, method: str, params: dict[str, Any] | None) -> tuple[int, bytes]:
        self.next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}},
                          separators=(",", ":")).encode() + b"\n"
        return self.next_id, line

    def _read_lines(self) -> list[dict[str, Any]]:
        """Block until at least one complete line is in; return every complete message (answers only)."""
        while True:
            if b"\n" in self.buf:
                *lines, self.buf = self.buf.split(b"\n")
                msgs = [json.loads(line) for line in lines if line.strip()]
                msgs = [m for m in msgs if "id" in m]  # drop notifications
                if msgs:
                    return msgs
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            self.buf += chunk

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One request, waiting for its answer (the CLI's pattern)."""
        req_id, line = self._encode(method, params)
        self.sock.sendall(line)
        while True:
            for msg in self._read_lines():
                if msg.get("id") == req_id:
                    if "error" in msg:
                        raise RpcError(msg["error"])
                    return msg.get("result")

    def timed_call(self, method: str, params: dict[str, Any] | None = None) -> Answer:
        """call() that also records when the request went out and when its answer came back."""
        req_id, line = self._encode(method, params)
        sent = time.time()
        self.sock.sendall(line)
        while True:
            for msg in self._read_lines():
                if msg.get("id") == req_id:
                    return Answer(sent, time.time(), msg.get("result"), msg.get("error"))

    def pipeline(self, requests: list[tuple[str, dict[str, Any] | None]], window: int = 256) -> list[Answer]:
        """Send every request keeping at most `window` unanswered; returns the answers in request order."""
        answers: list[Answer | None] = [None] * len(requests)
        index: dict[int, tuple[int, float]] = {}  # request id -> (position, send time)
        nxt = 0
        while nxt < len(requests) or index:
            room = window - len(index)
            if room > 0 and nxt < len(requests):
                # Refill in chunks (one sendall each) so answers keep flowing while we send.
                chunk = []
                now = time.time()
                for pos in range(nxt, min(len(requests), nxt + room)):
                    req_id, line = self._encode(*requests[pos])
                    index[req_id] = (pos, now)
                    chunk.append(line)
                nxt += len(chunk)
                self.sock.sendall(b"".join(chunk))
            for msg in self._read_lines():
                entry = index.pop(msg.get("id"), None)
                if entry is None:
                    continue
                pos, sent = entry
                answers[pos] = Answer(sent, time.time(), msg.get("result"), msg.get("error"))
        return answers  # type: ignore[return-value]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Rpc":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pipeline_parallel(socket_path: Path, requests: list[tuple[str, dict[str, Any] | None]], connections: int = 4,
                      window: int = 256, on_start: Any = None) -> list[Answer]:
    """Split `requests` over `connections` connections (one thread each), each pipelining with `window` in flight.

    The connections are opened and handshaken first; `on_start()` is called right before the first send."""
    conns = [Rpc(socket_path) for _ in range(connections)]
    parts = [requests[i::connections] for i in range(connections)]
    results: list[list[Answer]] = [[] for _ in range(connections)]
    errors: list[BaseException] = []
    go = threading.Barrier(connections + 1)

    def work(i: int) -> None:
        try:
            go.wait()
            results[i] = conns[i].pipeline(parts[i], window)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    if on_start is not None:
        on_start()
    go.wait()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    if errors:
        raise errors[0]
    out: list[Answer] = [None] * len(requests)  # type: ignore[list-item]
    for i in range(connections):
        out[i::connections] = results[i]
    return out


# -- the daemon --------------------------------------------------------------------------------


@dataclass
class BenchDaemon:
    """A real `python -m nexus_daemon daemon` in a temp folder, plus what a benchmark needs around it."""

    redis: str | None = None  # URL, or None for the daemon's embedded Redis
    database: str | None = None  # URL, or None for SQLite in the data folder
    worker_threads: int | None = None
    keep: bool = False
    log_level: str = "info"
    home: Path = field(default_factory=lambda: short_tempdir("nxb"))
    namespace: str | None = None
    proc: DaemonProcess | None = None
    database_url: str = ""
    _pg: tuple[str, str] | None = None
    _engine: sa.Engine | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, **kw: Any) -> "BenchDaemon":
        return cls(redis=args.redis, database=args.database, worker_threads=args.worker_threads, keep=args.keep,
                   **kw)

    # lifecycle

    def start(self) -> "BenchDaemon":
        if self.database and self.database.startswith(("postgres://", "postgresql")):
            self.database_url, name = create_postgres_database(self.database)
            self._pg = (self.database, name)
        elif self.database:
            self.database_url = self.database
        else:
            self.database_url = f"sqlite:///{self.home / 'nexus.db'}"
        if self.redis:
            self.namespace = f"nxbench{uuid.uuid4().hex[:8]}"
        env = {"NEXUS_LOG_LEVEL": self.log_level}
        if self.worker_threads:
            env["NEXUS_WORKER_THREADS"] = str(self.worker_threads)
        self.proc = DaemonProcess(self.home, database_url=self.database_url if self.database else None,
                                  redis_url=self.redis, redis_namespace=self.namespace, env=env)
        self.proc.start(timeout=60)
        return self

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self.proc is not None:
            try:
                self.proc.stop(timeout=30)
            except Exception as exc:  # noqa: BLE001 - still clean up below
                print(f"(daemon did not stop cleanly: {exc})", file=sys.stderr)
            self.proc = None
        if self.redis and self.namespace:
            from _baseline import cleanup as cleanup_keys

            try:
                cleanup_keys(self.redis, self.namespace)
            except Exception as exc:  # noqa: BLE001
                print(f"(could not delete the daemon's Redis keys: {exc})", file=sys.stderr)
        if self._pg is not None:
            try:
                drop_postgres_database(*self._pg)
            except Exception as exc:  # noqa: BLE001
                print(f"(could not drop database {self._pg[1]}: {exc})", file=sys.stderr)
            self._pg = None
        if self.keep:
            print(f"(kept {self.home})", file=sys.stderr)
        else:
            cleanup(self.home)

    def __enter__(self) -> "BenchDaemon":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # what benchmarks use

    @property
    def socket(self) -> Path:
        assert self.proc is not None
        return self.proc.socket

    @property
    def env(self) -> dict[str, str]:
        assert self.proc is not None
        return self.proc.env

    @property
    def pid(self) -> int:
        assert self.proc is not None and self.proc.proc is not None
        return self.proc.proc.pid

    @property
    def embedded_redis(self) -> bool:
        return self.redis is None

    @property
    def redis_url(self) -> str:
        """The Redis the daemon uses (for the bare baseline on the same server)."""
        return self.redis or f"unix://{self.home / 'redis' / 'redis.sock'}"

    @property
    def redis_pid(self) -> int | None:
        """The redis-server's pid: the embedded child's, or the external server's if it runs on this machine."""
        if self.embedded_redis:
            pidfile = self.home / "redis" / "redis.pid"
            return int(pidfile.read_text().strip()) if pidfile.exists() else None
        import redis

        try:
            with redis.Redis.from_url(self.redis_url) as client:
                pid = int(client.info("server")["process_id"])
            cpu_seconds(pid)  # readable here?
            return pid
        except Exception:  # noqa: BLE001 - remote or not ours to read
            return None

    def rpc(self) -> Rpc:
        return Rpc(self.socket)

    def db(self) -> sa.Engine:
        """An engine on the daemon's database, for reading run rows directly (not through the daemon)."""
        if self._engine is None:
            self._engine = sa.create_engine(normalize_url(self.database_url), poolclass=sa.pool.NullPool)
        return self._engine

    def describe(self) -> str:
        db = "sqlite (data folder)" if not self.database else f"{self.database_url.split('@')[-1]} (fresh)"
        redis_desc = f"embedded {self.redis_url}" if self.embedded_redis else f"{self.redis} ns={self.namespace}"
        return f"daemon pid={self.pid} database={db} redis={redis_desc}"

    def create_noop(self, name: str = "bench-noop") -> None:
        with self.rpc() as c:
            c.call("workflows.create", {"name": name, "kind": "noop"})

    def restart(self, timeout: float = 120.0, poll: float = 0.01) -> tuple[float, float]:
        """SIGTERM the daemon, wait for it to exit, start it again on the same data folder, database and Redis.

        Returns (wall clock time.time() at the new process's start, seconds from that start until the
        daemon answers `system.ping` on its socket), polling every `poll` seconds."""
        import subprocess

        assert self.proc is not None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        self.proc.stop(timeout=60)
        log = self.proc.log_path.open("ab")
        started_wall, started = time.time(), time.monotonic()
        # As DaemonProcess.start, without its 50 ms readiness poll.
        self.proc.proc = subprocess.Popen([sys.executable, "-m", "nexus_daemon", "daemon"], env=self.proc.env,
                                          stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = started + timeout
        while True:
            if self.proc.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.proc.returncode}:\n{self.proc.log()[-4000:]}")
            try:
                with Rpc(self.socket, timeout=5) as c:
                    if c.call("system.ping") == "pong":
                        return started_wall, time.monotonic() - started
            except (OSError, ConnectionError, RpcError, ValueError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"daemon not ready after {timeout}s:\n{self.proc.log()[-4000:]}")
            time.sleep(poll)


def parse_ts(value: Any) -> float | None:
    """A timestamp from the runs table (datetime, or SQLite's text) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        from datetime import datetime, timezone

        dt = datetime.fromisoformat(value)
        value = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    return value.timestamp()


def run_times(engine: sa.Engine, ids: list[str]) -> dict[str, tuple[float | None, float | None, float | None, str]]:
    """run id -> (created_at, started_at, finished_at as epoch seconds, status), read straight from the store."""
    out: dict[str, tuple[float | None, float | None, float | None, str]] = {}
    with engine.connect() as conn:
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            rows = conn.execute(sa.text("SELECT id, created_at, started_at, finished_at, status FROM runs "
                                        "WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True)),
                                {"ids": part})
            for r in rows:
                out[r.id] = (parse_ts(r.created_at), parse_ts(r.started_at), parse_ts(r.finished_at), r.status)
    return out


def count_by_status(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {r[0]: r[1] for r in conn.execute(sa.text("SELECT status, count(*) FROM runs GROUP BY status"))}


def wait_for_runs(engine: sa.Engine, ids: list[str], timeout: float = 60.0) -> None:
    """Wait until every run in ids has a started_at (and is final), reading the store."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        times = run_times(engine, ids)
        if len(times) == len(ids) and all(t[3] in ("succeeded", "failed", "dead") for t in times.values()):
            return
        time.sleep(0.2)
    raise RuntimeError(f"runs did not all finish within {timeout}s")
