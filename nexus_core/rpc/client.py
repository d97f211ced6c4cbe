"""A blocking JSON-RPC client for the one-shot CLI; it handshakes on connect."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nexus_core import __version__
from nexus_core.errors import DaemonUnreachableError, InternalError, NexusError, error_from_kind
from nexus_core.rpc.protocol import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, request


class Client:
    """One connection to the daemon; `call` sends a request and waits for its answer."""

    def __init__(self, socket_path: Path, *, timeout: float | None = 60.0, client_name: str = "nexus-cli"):
        self.socket_path = Path(socket_path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.socket_path))
        except (FileNotFoundError, ConnectionRefusedError, socket.timeout) as exc:
            self._sock.close()
            raise DaemonUnreachableError(f"no daemon answers on {self.socket_path} ({exc.strerror or exc})") from None
        except PermissionError:
            self._sock.close()
            raise DaemonUnreachableError(
                f"permission denied on {self.socket_path}: your user must be in the socket's group "
                "(daemon.socket_group in nexus.toml)") from None
        self._buf = b""
        self._next_id = 0
        self.pending_notifications: list[dict[str, Any]] = []
        self.hello = self.call("system.handshake",
                               {"protocol": PROTOCOL_VERSION, "client": client_name, "version": __version__})

    def _readline(self) -> bytes:
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise DaemonUnreachableError("the daemon did not answer in time") from None
            except OSError as exc:
                raise DaemonUnreachableError(f"connection to the daemon failed: {exc}") from None
            if not chunk:
                raise DaemonUnreachableError("the daemon closed the connection")
            self._buf += chunk
            if len(self._buf) > 64 * MAX_MESSAGE_BYTES:
                raise InternalError("answer from the daemon is too large")
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self._next_id += 1
        req_id = self._next_id
        try:
            self._sock.sendall(request(req_id, method, params))
        except OSError as exc:
            raise DaemonUnreachableError(f"connection to the daemon failed: {exc}") from None
        while True:
            msg = json.loads(self._readline())
            if "id" not in msg:
                self.pending_notifications.append(msg)
                continue
            if msg.get("id") != req_id:
                continue
            if "error" in msg:
                err = msg["error"]
                data = err.get("data") or {}
                raise error_from_kind(data.get("kind", "internal"), err.get("message", "unknown error"), data)
            return msg.get("result")

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_background_daemon(settings: Any, *, wait: float = 20.0) -> int:
    """Start `nexus daemon` detached from this terminal and wait until it answers; returns its pid."""
    settings.home.mkdir(parents=True, exist_ok=True)
    log_path = settings.log_path
    env = {**os.environ, "NEXUS_LOG_FORMAT": "json"}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "nexus_daemon", "--background"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True, env=env, close_fds=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DaemonUnreachableError(
                f"the background daemon exited with status {proc.returncode}; see {log_path}")
        try:
            Client(settings.socket_path, timeout=2).close()
            return proc.pid
        except NexusError:
            time.sleep(0.05)
    raise DaemonUnreachableError(f"the background daemon did not answer within {wait:.0f}s; see {log_path}")


def connect(settings: Any, *, autostart: bool = True, quiet: bool = False, timeout: float | None = 60.0) -> Client:
    """Connect to the daemon, starting one in the background for the embedded default."""
    try:
        return Client(settings.socket_path, timeout=timeout)
    except DaemonUnreachableError as exc:
        if not (autostart and settings.embedded) or "permission denied" in exc.message:
            raise DaemonUnreachableError(
                f"{exc.message}. Start it with `nexus daemon` (or `systemctl start nexus` on a server)") from None
    pid = start_background_daemon(settings)
    if not quiet:
        print(f"nexus: no daemon was running; started one in the background (pid {pid}, "
              f"log {settings.log_path})", file=sys.stderr)
    return Client(settings.socket_path, timeout=timeout)
