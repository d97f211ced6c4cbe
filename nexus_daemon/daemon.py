"""The daemon's lifecycle: Redis, store, workers, recovery, the RPC server, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import fcntl
import grp
import os
import signal
import socket
import threading
import time
from typing import Any

import sqlalchemy as sa
import structlog

from nexus_core import __version__, logs
from nexus_core.config import Settings
from nexus_core.errors import NexusError, UnavailableError
from nexus_core.redact import redact_url
from nexus_core.services import activity
from nexus_core.store import migrate
from nexus_core.store.db import Store
from nexus_core.store.models import new_id
from nexus_core.store.models import orgs_table as O
from nexus_core.store.types import utcnow
from nexus_daemon import recovery, systemd
from nexus_daemon.dispatcher import Dispatcher, Sender
from nexus_daemon.executor import Executor, new_worker_id
from nexus_daemon.live import RunChanges, push
from nexus_daemon.metrics import Metrics
from nexus_daemon.modes import Modes

log = structlog.get_logger("nexus.daemon")
QUEUES = ("automation", "email", "sync", "report", "webhook")
SWEEP_SECONDS = 15.0


class Daemon:
    """One daemon process; `run()` blocks until SIGTERM or SIGINT and returns the exit code."""

    def __init__(self, settings: Settings, *, workers: bool = True, rpc: bool = True):
        self.settings = settings
        self.with_workers = workers
        self.with_rpc = rpc
        self.pid = os.getpid()
        self.started = time.time()
        self.metrics = Metrics()
        self.connections: set[Any] = set()
        self.changes = RunChanges(self.connections)
        self.modes = Modes(self)
        self.stopping = False
        self.worker_id = new_worker_id()
        self._orgs: dict[str, str] = {}
        self._stop_event = threading.Event()
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._events_lock = threading.Lock()
        self._events_armed = False
        self.redis: Any = None
        self.redis_url: str | None = None
        self.store: Store | None = None  # type: ignore[assignment]
        self.broker: Any = None
        self.worker: Any = None
        self.sender: Sender | None = None
        self.dispatcher: Dispatcher | None = None  # type: ignore[assignment]
        self._lock_fd: int | None = None
        self.scheduler: Any = None

    # -- start and stop -------------------------------------------------------------------

    def run(self) -> int:
        logs.configure(self.settings.log_level, self.settings.log_format)
        try:
            self._start()
        except NexusError as exc:
            log.error("daemon could not start", error=exc.message)
            self._shutdown()
            return exc.exit_code
        try:
            if self.with_rpc:
                asyncio.run(self._serve())
            else:
                self._wait_for_signal()
        finally:
            self._shutdown()
        log.info("daemon stopped")
        return 0

    def _start(self) -> None:
        s = self.settings
        s.home.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        if self.with_rpc:
            self._check_socket()
        if s.redis_url:
            self.redis_url = s.redis_url
        else:
            from nexus_daemon.redis_supervisor import EmbeddedRedis

            self.redis = EmbeddedRedis(s.home)
            self.redis_url = self.redis.start()
        self.store = Store(s.effective_database_url)
        try:
            if migrate.upgrade(self.store.engine):
                log.info("database migrated", url=redact_url(self.store.url))
        except sa.exc.OperationalError as exc:
            raise UnavailableError(f"database {redact_url(self.store.url)} is unreachable: {exc.orig}") from None
        from nexus_core.services import fires
        from nexus_core.store import fast
        from nexus_daemon.broker import make_broker

        with self.store.read() as conn:
            fires.run_insert(conn.dialect.name)  # built per dialect on first use
            fast.prepare_all(conn)  # compiled now, not during the first runs

        self.broker = make_broker(self.redis_url, namespace=s.redis_namespace, queues=QUEUES,
                                  broker_id=self.worker_id)
        self.sender = Sender(self.broker)
        activity.listeners.append(self._push_activity)
        activity.notification_listeners.append(self._push_notification)
        # Only a daemon with a socket has anyone to tell about run changes; `nexus worker` does not count them.
        on_change = self.changes.note if self.with_rpc else None
        self.executor = Executor(self.store, self.sender.enqueue, self.worker_id,
                                 on_finished=self._run_finished, on_change=on_change, metrics=self.metrics)
        self.executor.register(self.broker)
        if self.with_rpc:
            # Imported before the workers and the scheduler start: importing them beside the first runs
            # took the GIL for ~0.1 s, enough for a per-second schedule's next fire to find its run still busy.
            from nexus_daemon import handlers, rpc_server  # noqa: F401

            handlers.load_all()
        if self.with_workers:
            recovery.heartbeat(self.store, self.worker_id, QUEUES)
            recovery.recover(self.store, self.broker, self.sender, self.worker_id, startup=True, on_change=on_change)
            from nexus_daemon.workers import NexusWorker

            self.worker = NexusWorker(self.broker, queues=set(QUEUES), worker_threads=s.worker_threads)
            self.worker.start()
        if self.with_rpc:  # the daemon schedules; `nexus worker` processes only run jobs
            from nexus_daemon.scheduler import Scheduler

            self.scheduler = Scheduler(self.store, self.sender.enqueue, metrics=self.metrics,
                                       on_change=self.changes.note)
            self.scheduler.start()
        threading.Thread(target=self._housekeeping, name="nexus-housekeeping", daemon=True).start()
        log.info("daemon started", version=__version__, pid=self.pid, database=redact_url(self.store.url),
                 redis=redact_url(self.redis_url), embedded_redis=self.redis is not None,
                 workers=s.worker_threads if self.with_workers else 0)

    def _take_lock(self) -> None:
        fd = os.open(self.settings.home / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UnavailableError(
                f"another Nexus daemon is already running with data folder {self.settings.home}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(self.pid).encode())
        self._lock_fd = fd

    def _check_socket(self) -> None:
        path = self.settings.socket_path
        if len(str(path).encode()) > 100:
            raise UnavailableError(f"socket path {path} is longer than 100 bytes; set NEXUS_SOCKET to a shorter path")
        if not path.exists():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(2)
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)  # stale: nobody answers
            log.info("removed stale socket", path=str(path))
            return
        finally:
            probe.close()
        raise UnavailableError(f"another Nexus daemon already answers on {path}; stop it first or use another socket")

    async def _serve(self) -> None:
        from nexus_daemon import handlers, rpc_server
        from nexus_daemon.handlers.activity import push_event

        handlers.load_all()
        self._push_event = push_event
        self.loop = asyncio.get_running_loop()
        assert self.store is not None and self.sender is not None
        self.dispatcher = Dispatcher(self.store, self.sender, self.loop, changes=self.changes)
        self.changes.attach(self.loop)
        path = self.settings.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = rpc_server.Connection(self, reader, writer)
            self.connections.add(conn)
            try:
                await conn.serve()
            except asyncio.CancelledError:
                pass  # the daemon is stopping with this client still connected (a TUI, a subscriber)

        server = await asyncio.start_unix_server(on_connect, path=str(path), limit=1024 * 1024 + 1)
        os.chmod(path, 0o660)
        if self.settings.socket_group:
            try:
                os.chown(path, -1, grp.getgrnam(self.settings.socket_group).gr_gid)
            except (KeyError, PermissionError) as exc:
                log.warning("could not give the socket to its group", group=self.settings.socket_group, error=str(exc))
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)
        systemd.notify(f"READY=1\nSTATUS=serving on {path}\nMAINPID={self.pid}")
        log.info("listening", socket=str(path))
        await stop.wait()
        log.info("stopping: no new requests, letting running jobs finish", grace_s=self.settings.shutdown_grace)
        systemd.notify("STOPPING=1\nSTATUS=stopping: letting running jobs finish")
        self.stopping = True
        self.changes.detach()
        server.close()
        for conn in list(self.connections):
            conn.writer.close()
        path.unlink(missing_ok=True)

    def _wait_for_signal(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop_event.set())
        systemd.notify(f"READY=1\nSTATUS=running workers only\nMAINPID={self.pid}")
        while not self._stop_event.wait(1.0):
            pass
        systemd.notify("STOPPING=1\nSTATUS=stopping: letting running jobs finish")

    def _shutdown(self) -> None:
        self.stopping = True
        self._stop_event.set()
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        if self.worker is not None:
            self.worker.stop(timeout=int(self.settings.shutdown_grace * 1000))
            self.worker = None
        if self.sender is not None:
            self.sender.close()
        if self.store is not None and self.with_workers:
            try:
                recovery.heartbeat(self.store, self.worker_id, QUEUES, stopped=True)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if self._push_activity in activity.listeners:
            activity.listeners.remove(self._push_activity)
        if self._push_notification in activity.notification_listeners:
            activity.notification_listeners.remove(self._push_notification)
        if self.broker is not None:
            self.broker.close()
            self.broker = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _housekeeping(self) -> None:
        """Heartbeat, systemd watchdog, and a periodic recovery sweep for runs other hosts left behind."""
        watchdog = systemd.watchdog_interval()
        if watchdog:
            # Beats come from their own thread, so a slow database call below never delays one. The
            # daemon beats only while its event loop answers (a hung loop gets it restarted); the
            # workers-only process (`nexus worker`) has no loop and beats while it is alive.
            loop = (lambda: getattr(self, "loop", None)) if self.with_rpc else None
            systemd.Watchdog(watchdog, self._stop_event, loop).start()
        last_sweep = time.monotonic()
        while not self._stop_event.wait(recovery.HEARTBEAT_SECONDS):
            try:
                if self.with_workers and self.store is not None:
                    recovery.heartbeat(self.store, self.worker_id, QUEUES)
                    self.broker.heartbeat()  # idle consumers do not fetch, so nothing else refreshes it
                if time.monotonic() - last_sweep >= SWEEP_SECONDS and self.store and self.sender:
                    last_sweep = time.monotonic()
                    recovery.recover(self.store, self.broker, self.sender, self.worker_id, startup=False,
                                     on_change=self.changes.note if self.with_rpc else None)
            except Exception as exc:  # noqa: BLE001 - keep beating through a database or Redis outage
                log.warning("housekeeping failed", error=str(exc))

    # -- used by handlers -----------------------------------------------------------------

    async def organization_id(self, name: str) -> str:
        if name not in self._orgs:
            def write(conn: sa.Connection) -> str:
                row = conn.execute(sa.select(O.c.id).where(O.c.name == name)).first()
                if row:
                    return str(row.id)
                org_id = new_id()
                conn.execute(sa.insert(O).values(id=org_id, name=name, created_at=utcnow()))
                return org_id

            assert self.store is not None
            self._orgs[name] = await self.store.awrite(write)
        return self._orgs[name]

    def schedule_changed(self, ids: list[str] | None = None) -> None:
        """Workflows were created, changed, paused, resumed or deleted and committed: the scheduler re-reads
        exactly these (or, without ids, everything changed lately)."""
        if self.scheduler is not None:
            self.scheduler.changed(ids)

    def _run_finished(self, run_id: str, status: str) -> None:
        if self.dispatcher is not None:
            self.dispatcher.finished(run_id, status)

    def _push_activity(self, org_id: str, event: dict[str, Any]) -> None:
        # Called by the writer for every event it committed (one per trigger): they are handed to the
        # loop together, one wake-up for all that came while it was busy, not one each.
        loop = getattr(self, "loop", None)
        if loop is None or loop.is_closed():
            return
        with self._events_lock:
            self._events.append((org_id, event))
            if self._events_armed:
                return
            self._events_armed = True
        try:
            loop.call_soon_threadsafe(self._flush_activity)
        except RuntimeError:  # the loop closed meanwhile: the daemon is stopping
            pass

    def _flush_activity(self) -> None:
        with self._events_lock:
            events, self._events = self._events, []
            self._events_armed = False
        for org_id, event in events:
            self._push_event(self, org_id, event)

    def _push_notification(self, org_id: str, item: dict[str, Any]) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(push, self.connections, org_id, "notifications", "notifications.new", item)

    async def health(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._health)

    def _health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": __version__, "pid": self.pid, "uptime_s": round(time.time() - self.started, 1),
                               "socket": str(self.settings.socket_path), "ok": True}
        assert self.store is not None
        t0 = time.perf_counter()
        try:
            with self.store.read() as conn:
                conn.execute(sa.text("SELECT 1"))
                workers = recovery.live_workers(conn)
            out["database"] = {"ok": True, "backend": self.store.dialect, "url": redact_url(self.store.url),
                               "latency_ms": round((time.perf_counter() - t0) * 1000, 2)}
        except Exception as exc:  # noqa: BLE001 - health reports, it does not fail
            out["ok"] = False
            workers = []
            out["database"] = {"ok": False, "backend": self.store.dialect, "url": redact_url(self.store.url),
                               "error": str(getattr(exc, "message", exc))}
        t0 = time.perf_counter()
        try:
            depths = self.broker.queue_depths()
            out["redis"] = {"ok": True, "embedded": self.redis is not None, "url": redact_url(self.redis_url),
                            "latency_ms": round((time.perf_counter() - t0) * 1000, 2)}
            out["queues"] = depths
        except Exception as exc:  # noqa: BLE001
            out["ok"] = False
            out["redis"] = {"ok": False, "embedded": self.redis is not None, "url": redact_url(self.redis_url),
                            "error": str(exc)}
            out["queues"] = {}
        if self.scheduler is not None:
            out["scheduler"] = self.scheduler.status()
        out["workers"] = {"processes": len(workers), "in_daemon": bool(self.worker),
                          "threads": self.settings.worker_threads if self.worker else 0,
                          "hosts": sorted({w["host"] for w in workers})}
        if not workers:
            out["ok"] = False
        return out
