"""A test client that also waits for pushed notifications, as the TUI does (not a test module)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Callable

from nexus_core.errors import NexusError, error_from_kind
from nexus_core.rpc.protocol import PROTOCOL_VERSION, request


class Listener:
    """One connection: `call` answers requests, notifications that arrive meanwhile are kept with their time."""

    def __init__(self, socket_path: Path, timeout: float = 20.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(socket_path))
        self.buf = b""
        self.next_id = 0
        self.pushes: list[tuple[float, str, dict[str, Any]]] = []
        self.hello = self.call("system.handshake", {"protocol": PROTOCOL_VERSION, "client": "test-listener"})

    def _line(self, timeout: float | None = None) -> dict[str, Any] | None:
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.next_id += 1
        self.sock.sendall(request(self.next_id, method, params))
        while True:
            msg = self._line(60)
            assert msg is not None, f"no answer to {method} within 60 s"
            if "id" not in msg:
                self.pushes.append((time.monotonic(), msg["method"], msg["params"]))
            elif msg["id"] == self.next_id:
                if "error" in msg:
                    data = msg["error"].get("data") or {}
                    raise error_from_kind(data.get("kind", "internal"), msg["error"]["message"], data)
                return msg["result"]

    def error(self, method: str, params: dict[str, Any] | None = None) -> NexusError:
        """The error a call is answered with (fails the test if it succeeds)."""
        try:
            result = self.call(method, params)
        except NexusError as exc:
            return exc
        raise AssertionError(f"{method} {params} was expected to fail, answered {result!r}")

    def wait_for(self, method: str, match: Callable[[dict[str, Any]], bool] = lambda p: True,
                 timeout: float = 15.0) -> dict[str, Any]:
        """The first push of `method` (kept or still to come) whose params match."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for _, name, params in self.pushes[seen:]:
                if name == method and match(params):
                    return params
            seen = len(self.pushes)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching {method} within {timeout} s; got {self.pushes}")
            msg = self._line(left)
            if msg is not None and "id" not in msg:
                self.pushes.append((time.monotonic(), msg["method"], msg["params"]))

    def drain(self, seconds: float) -> None:
        """Keep reading pushes for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = self._line(left)
            if msg is not None and "id" not in msg:
                self.pushes.append((time.monotonic(), msg["method"], msg["params"]))

    def of(self, method: str) -> list[dict[str, Any]]:
        return [params for _, name, params in self.pushes if name == method]

    def close(self) -> None:
        self.sock.close()
