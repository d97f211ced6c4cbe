"""Test helpers shipped with Nexus: a real daemon process in a temp folder, driven like a user would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nexus_core.rpc.client import Client

CLI = [sys.executable, "-m", "nexus_core.cli.main"]


def short_tempdir(prefix: str = "nx") -> Path:
    """A temp folder with a short path: Unix socket paths must stay under ~100 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


class DaemonProcess:
    """`python -m nexus_daemon` in its own data folder, with helpers to call it and to kill it."""

    def __init__(self, home: Path, *, database_url: str | None = None, redis_url: str | None = None,
                 redis_namespace: str | None = None, config: str = "", env: dict[str, str] | None = None):
        self.home = home
        self.socket = home / "nexus.sock"
        self.config_path = home / "nexus.toml"
        self.config_path.write_text(config)
        self.log_path = home / "daemon-test.log"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("NEXUS_") and k not in ("REDIS_URL", "DATABASE_URL", "NOTIFY_SOCKET")}
        self.env.update(NEXUS_HOME=str(home), NEXUS_SOCKET=str(self.socket), NEXUS_CONFIG=str(self.config_path),
                        NEXUS_LOG_FORMAT="json", NEXUS_SHUTDOWN_GRACE="10")
        if database_url:
            self.env["NEXUS_DATABASE_URL"] = database_url
        if redis_url:
            self.env["NEXUS_REDIS_URL"] = redis_url
        if redis_namespace:
            self.env["NEXUS_REDIS_NAMESPACE"] = redis_namespace
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str, timeout: float = 30.0) -> "DaemonProcess":
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "nexus_daemon", "daemon", *extra], env=self.env,
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                Client(self.socket, timeout=2).close()
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.05)
        raise RuntimeError(f"daemon not ready after {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self) -> Client:
        return Client(self.socket, timeout=60)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        with self.client() as c:
            return c.call(method, params)

    def cli(self, *args: str, timeout: float = 60, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `nexus ARGS` as a user would, against this daemon."""
        return subprocess.run([*CLI, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              user=user, stdin=subprocess.DEVNULL)

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        if done.returncode != 0:
            raise AssertionError(f"nexus {' '.join(args)} exited {done.returncode}: {done.stderr}{done.stdout}")
        return json.loads(done.stdout)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing gets to clean up."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


def stop_embedded_redis(home: Path) -> None:
    """Stop a Redis the daemon left running (after a SIGKILL the daemon cannot stop it)."""
    pidfile = home / "redis" / "redis.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass


def cleanup(home: Path) -> None:
    stop_embedded_redis(home)
    shutil.rmtree(home, ignore_errors=True)
