"""The JSON-RPC 2.0 server on its Unix socket, spoken to raw: framing, error codes, handshake, live activity."""

from __future__ import annotations

import json
import os
import pwd
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nexus_core import __version__
from nexus_core.rpc.protocol import PROTOCOL_VERSION
from nexus_core.testing import DaemonProcess, cleanup, short_tempdir


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    """One daemon for the module: the protocol does not depend on the database, and each test uses it fresh."""
    home = short_tempdir()
    proc = DaemonProcess(home)
    try:
        yield proc.start()
    finally:
        try:
            proc.stop()
        finally:
            cleanup(home)


class Raw:
    """A bare socket to the daemon: send bytes, read one JSON line at a time."""

    def __init__(self, daemon: DaemonProcess, timeout: float = 20.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(daemon.socket))
        self.buf = b""
        self.next_id = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"daemon closed the connection; unread: {self.buf[:200]!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def request(self, method: str, params: Any = None, **extra: Any) -> dict[str, Any]:
        """Send a request and return the response with its id, keeping notifications that came first."""
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method, **extra}
        if params is not None:
            msg["params"] = params
        self.send(json.dumps(msg).encode() + b"\n")
        while True:
            answer = self.line()
            if answer.get("id") == self.next_id:
                return answer

    def handshake(self) -> dict[str, Any]:
        answer = self.request("system.handshake", {"protocol": PROTOCOL_VERSION, "client": "test"})
        assert "result" in answer, answer
        return answer["result"]

    def close(self) -> None:
        self.sock.close()


def error_of(answer: dict[str, Any]) -> dict[str, Any]:
    assert "error" in answer and "result" not in answer, answer
    assert answer["jsonrpc"] == "2.0"
    err = answer["error"]
    assert isinstance(err["code"], int) and err["message"], err
    return err


def test_protocol_errors_leave_the_daemon_serving(daemon: DaemonProcess) -> None:
    # The first call on a connection must be the handshake.
    first = Raw(daemon)
    err = error_of(first.request("workflows.list"))
    assert "handshake" in err["message"] and err["data"]["kind"] == "invalid"
    first.close()

    raw = Raw(daemon)
    hello = raw.handshake()
    assert hello["protocol"] == PROTOCOL_VERSION and hello["version"] == __version__
    assert hello["operator"]["name"] == pwd.getpwuid(os.geteuid()).pw_name
    assert hello["operator"]["role"] == "admin"
    assert hello["daemon_pid"] == daemon.proc.pid  # type: ignore[union-attr]

    # Malformed JSON: parse error, no id; the connection stays usable.
    raw.send(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
    answer = raw.line()
    err = error_of(answer)
    assert err["code"] == -32700 and err["data"]["kind"] == "invalid" and answer["id"] is None

    # A batch (JSON array) is not supported: invalid request.
    raw.send(b'[{"jsonrpc": "2.0", "id": 7, "method": "system.ping"}]\n')
    err = error_of(raw.line())
    assert err["code"] == -32600 and err["data"]["kind"] == "invalid"

    # Missing "jsonrpc": invalid request, answered with the request's id.
    raw.send(b'{"id": 8, "method": "system.ping"}\n')
    answer = raw.line()
    assert error_of(answer)["code"] == -32600 and answer["id"] == 8

    # Unknown method.
    err = error_of(raw.request("workflows.frobnicate", {}))
    assert err["code"] == -32601 and "workflows.frobnicate" in err["message"]

    # Params of the wrong type: invalid params, naming the field.
    err = error_of(raw.request("workflows.create", {"name": "x", "kind": "noop", "retries": "x"}))
    assert err["code"] == -32602 and err["data"]["kind"] == "invalid" and err["data"]["field"] == "retries"
    err = error_of(raw.request("workflows.create", ["x", "noop"]))
    assert err["code"] == -32602 and err["data"]["field"] == "params"
    err = error_of(raw.request("workflows.create", {"name": "x", "kind": "noop", "colour": "red"}))
    assert err["code"] == -32602 and err["data"]["field"] == "colour"
    # ... and none of those created anything.
    assert "x" not in [wf["name"] for wf in raw.request("workflows.list")["result"]]

    # Still answering on the same connection.
    assert raw.request("system.ping")["result"] == "pong"
    raw.close()

    # A line over 1 MiB: a JSON-RPC error, then the daemon hangs up on that connection only.
    big = Raw(daemon)
    big.handshake()
    huge = b'{"jsonrpc": "2.0", "id": 99, "method": "system.ping", "params": {"pad": "' + b"x" * (1024 * 1024 + 10)
    try:
        big.send(huge + b'"}}\n')
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon may stop reading once the line is too long; its answer is already on the way
    err = error_of(big.line())
    assert err["code"] == -32600 and "MiB" in err["message"]
    big.close()

    # New connections are served as before, and the daemon is healthy.
    after = Raw(daemon)
    after.handshake()
    health = after.request("system.health")["result"]
    assert health["ok"] is True and health["pid"] == daemon.proc.pid  # type: ignore[union-attr]
    after.close()
    assert daemon.call("system.ping") == "pong"
    assert daemon.cli("sys:health").returncode == 0
    assert daemon.proc.poll() is None  # type: ignore[union-attr]


def test_handshake_with_a_foreign_protocol_is_refused(daemon: DaemonProcess) -> None:
    raw = Raw(daemon)
    err = error_of(raw.request("system.handshake", {"protocol": PROTOCOL_VERSION + 41}))
    assert err["data"]["field"] == "protocol" and "upgrade" in err["message"]
    raw.close()


def test_activity_subscription_pushes_events_from_other_connections(daemon: DaemonProcess) -> None:
    watcher = Raw(daemon)
    watcher.handshake()
    sub = watcher.request("activity.subscribe", {})
    assert sub["result"] == {"subscribed": "activity", "notification": "activity.event"}

    # Another connection (here: the CLI, as a user would) creates a workflow.
    done = daemon.cli("auto:create", "watched", "--kind", "noop")
    assert done.returncode == 0, done.stderr

    deadline = time.monotonic() + 15
    seen = []
    while time.monotonic() < deadline:
        msg = watcher.line()
        assert "id" not in msg, f"only notifications were expected, got {msg}"
        assert msg["jsonrpc"] == "2.0" and msg["method"] == "activity.event"
        seen.append(msg["params"])
        if msg["params"]["action"] == "workflow.created":
            break
    else:
        raise AssertionError(f"no workflow.created event within 15 s; saw {seen}")
    event = seen[-1]
    assert event["target"] == "watched" and event["actor"] == pwd.getpwuid(os.geteuid()).pw_name
    assert "watched" in event["message"] and event["id"] > 0 and event["at"]

    # Triggering is pushed too, and a connection that did not subscribe gets nothing unasked.
    quiet = Raw(daemon)
    quiet.handshake()
    quiet.sock.settimeout(1.0)
    assert daemon.cli("auto:trigger", "watched").returncode == 0
    actions = []
    while "workflow.triggered" not in actions:
        actions.append(watcher.line()["params"]["action"])
    try:
        unexpected = quiet.line()
    except socket.timeout:
        unexpected = None
    assert unexpected is None, unexpected
    quiet.close()
    watcher.close()
