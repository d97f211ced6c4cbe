"""The daemon's life: one per data folder, stale sockets, a graceful SIGTERM, and autostart by the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nexus_core.testing import DaemonProcess, cleanup, short_tempdir


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie, dead but not yet reaped by whoever adopted it, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def run_daemon_once(env: dict[str, str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Start `nexus daemon` in the foreground and expect it to give up on its own."""
    return subprocess.run([sys.executable, "-m", "nexus_daemon", "daemon"], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def leave_stale_socket(path: Path) -> None:
    """What a crashed daemon leaves: a socket file nobody listens on."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    assert path.exists()


def test_one_daemon_per_folder_graceful_stop_and_stale_socket(make_daemon, home: Path) -> None:  # type: ignore[no-untyped-def]
    first: DaemonProcess = make_daemon().start()
    first.cli_json("auto:create", "slow", "--kind", "command", "--payload", '{"argv": ["sleep", "2"]}',
                   "--retries", "0")

    # A second daemon on the same data folder refuses to start; the first keeps serving.
    second = run_daemon_once(first.env)
    assert second.returncode != 0
    assert "already" in second.stderr, second.stderr[-2000:]
    assert first.proc.poll() is None  # type: ignore[union-attr]
    assert [wf["name"] for wf in first.cli_json("auto:list")] == ["slow"]

    # Another data folder but the same socket: refused too, the socket is not taken over.
    other_home = short_tempdir()
    try:
        third = run_daemon_once({**first.env, "NEXUS_HOME": str(other_home)})
        assert third.returncode != 0
        assert "already" in third.stderr and str(first.socket) in third.stderr, third.stderr[-2000:]
    finally:
        cleanup(other_home)
    assert first.cli("auto:list").returncode == 0

    # A run in progress when SIGTERM arrives finishes: the daemon waits for it, then exits 0 and cleans up.
    run = first.cli_json("auto:trigger", "slow")
    wait_for(lambda: first.cli_json("auto:run", run["id"])["status"] == "running", what="the run to start")
    redis_pid = int((home / "redis" / "redis.pid").read_text().strip())
    assert alive(redis_pid)
    signalled = datetime.now(timezone.utc)
    first.signal(signal.SIGTERM)
    assert first.proc.wait(30) == 0, first.log()[-3000:]  # type: ignore[union-attr]
    assert not first.socket.exists()
    wait_for(lambda: not alive(redis_pid), timeout=10, what="the embedded redis to stop")
    assert '"daemon stopped"' in first.log()

    # The next daemon finds a stale socket file (as a crash leaves it), removes it and starts.
    leave_stale_socket(first.socket)
    again: DaemonProcess = make_daemon().start()
    assert "removed stale socket" in again.log()
    done = again.cli_json("auto:run", run["id"])
    assert done["status"] == "succeeded", done
    assert [a["status"] for a in done["attempts"]] == ["succeeded"]
    assert datetime.fromisoformat(done["finished_at"]) > signalled  # it was still running when SIGTERM came
    assert again.cli_json("sys:health")["ok"] is True
    assert again.stop() == 0


def test_cli_starts_a_daemon_when_none_runs(make_daemon, home: Path) -> None:  # type: ignore[no-untyped-def]
    daemon: DaemonProcess = make_daemon()  # built with the embedded default config, never started here
    assert not daemon.socket.exists()
    lock = home / "daemon.lock"
    pid = None
    try:
        first = daemon.cli("auto:list")
        assert first.returncode == 0, first.stderr
        assert "started one in the background" in first.stderr
        assert "No workflows yet" in first.stdout
        pid = int(lock.read_text().strip())
        assert re.search(rf"\bpid {pid}\b", first.stderr), first.stderr
        assert alive(pid)

        second = daemon.cli("auto:list", "--json")
        assert second.returncode == 0 and json.loads(second.stdout) == []
        assert "started" not in second.stderr
        third = daemon.cli("auto:create", "after-autostart", "--kind", "noop")
        assert third.returncode == 0 and "started" not in third.stderr
        assert int(lock.read_text().strip()) == pid  # still the same daemon
        assert daemon.call("system.handshake", {"protocol": 1})["daemon_pid"] == pid

        stopped = daemon.cli("daemon:stop")
        assert stopped.returncode == 0 and f"daemon pid {pid} is stopping" in stopped.stdout, stopped.stderr
        wait_for(lambda: not alive(pid), timeout=30, what="the daemon to stop after daemon:stop")
        # Stopping when none runs says so and does not start one just to stop it.
        again = daemon.cli("daemon:stop")
        assert again.returncode == 3 and "started" not in again.stderr, again.stderr
        assert not daemon.socket.exists()
    finally:
        if pid is None and lock.exists() and lock.read_text().strip():
            pid = int(lock.read_text().strip())
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), timeout=30, what="the background daemon to stop")
    assert not daemon.socket.exists()


def test_without_the_embedded_default_the_cli_does_not_start_a_daemon(make_daemon) -> None:  # type: ignore[no-untyped-def]
    # An external Redis is configured: starting a daemon is left to the administrator.
    daemon: DaemonProcess = make_daemon(redis_url="redis://127.0.0.1:6379/0")
    done = daemon.cli("auto:list")
    assert done.returncode == 3, done.stderr + done.stdout
    assert "nexus daemon" in done.stderr and str(daemon.socket) in done.stderr
    as_json = daemon.cli("auto:list", "--json")
    assert as_json.returncode == 3 and json.loads(as_json.stdout)["error"]["kind"] == "unavailable"
    assert not daemon.socket.exists() and not (daemon.home / "daemon.lock").exists()
