"""sd_notify: READY, WATCHDOG and STOPPING reach a real NOTIFY_SOCKET, from the daemon and from `nexus worker`."""

from __future__ import annotations

import array
import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexus_core.rpc.client import Client
from nexus_core.testing import DaemonProcess, cleanup, short_tempdir
from nexus_daemon import systemd

WATCHDOG_USEC = 1_000_000  # beats every 0.5 s


class NotifySocket:
    """What systemd listens on: a datagram socket that also learns each sender's pid (SO_PASSCRED)."""

    def __init__(self, address: str | None = None):
        self.dir = short_tempdir("nxn")
        self.address = address or str(self.dir / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + self.address[1:] if self.address.startswith("@") else self.address)
        self.seen: list[tuple[float, int, dict[str, str]]] = []  # (monotonic time, sender pid, fields)

    def receive(self, timeout: float) -> tuple[float, int, dict[str, str]] | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except socket.timeout:
            return None
        pid = -1
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = array.array("i", payload[:struct.calcsize("3i")])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        message = (time.monotonic(), pid, fields)
        self.seen.append(message)
        return message

    def wait_for(self, key: str, pid: int, timeout: float = 30.0) -> tuple[float, int, dict[str, str]]:
        """The next message from `pid` that sets `key` (systemd with NotifyAccess=main ignores other senders)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message and message[1] == pid and key in message[2]:
                return message
        raise AssertionError(f"no {key} from pid {pid} within {timeout}s; got {self.seen}")

    def beats(self, pid: int, count: int, timeout: float) -> list[float]:
        """Wait for `count` WATCHDOG=1 from `pid`; their arrival times."""
        times: list[float] = []
        deadline = time.monotonic() + timeout
        while len(times) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(times)} of {count} WATCHDOG=1 within {timeout}s; got {self.seen}")
            message = self.receive(left)
            if message and message[1] == pid and message[2].get("WATCHDOG") == "1":
                times.append(message[0])
        return times

    def close(self) -> None:
        self.sock.close()
        cleanup(self.dir)


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    listener = NotifySocket()
    yield listener
    listener.close()


def notify_env(listener: NotifySocket) -> dict[str, str]:
    return {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}


def test_daemon_notifies_ready_watchdog_and_stopping(make_daemon, notify_socket: NotifySocket) -> None:  # type: ignore[no-untyped-def]
    daemon: DaemonProcess = make_daemon(env=notify_env(notify_socket))
    log = daemon.log_path.open("ab")
    daemon.proc = subprocess.Popen([sys.executable, "-m", "nexus_daemon", "daemon"], env=daemon.env,
                                   stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    pid = daemon.proc.pid

    try:
        _, _, ready = notify_socket.wait_for("READY", pid)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ndaemon log:\n{daemon.log()[-4000:]}") from None
    # Freeze the daemon the moment READY=1 arrives: its socket must already be listening (a stopped
    # process's listening socket still completes connects into its backlog).
    os.kill(pid, signal.SIGSTOP)
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        probe.connect(str(daemon.socket))
        probe.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert ready["READY"] == "1" and ready["MAINPID"] == str(pid)
    assert str(daemon.socket) in ready["STATUS"]
    with Client(daemon.socket, timeout=10) as client:
        assert client.call("system.ping") is not None

    notify_socket.beats(pid, 3, timeout=3.5)

    daemon.signal(signal.SIGTERM)
    _, _, stopping = notify_socket.wait_for("STOPPING", pid, timeout=15)
    assert stopping["STOPPING"] == "1"
    assert daemon.proc.wait(20) == 0


def test_worker_notifies_ready_watchdog_and_stopping(make_daemon, home: Path,  # type: ignore[no-untyped-def]
                                                     notify_socket: NotifySocket) -> None:
    daemon: DaemonProcess = make_daemon().start()
    # `nexus worker` on "another host": its own data folder, the daemon's database and Redis.
    worker_home = short_tempdir("nxw")
    env = {**daemon.env, **notify_env(notify_socket), "NEXUS_HOME": str(worker_home),
           "NEXUS_SOCKET": str(worker_home / "unused.sock"),
           "NEXUS_DATABASE_URL": f"sqlite:///{home / 'nexus.db'}",
           "NEXUS_REDIS_URL": f"unix://{home / 'redis' / 'redis.sock'}"}
    log_path = worker_home / "worker.log"
    with log_path.open("ab") as log:
        worker = subprocess.Popen([sys.executable, "-m", "nexus_daemon", "worker"], env=env,
                                  stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        try:
            _, _, ready = notify_socket.wait_for("READY", worker.pid)
            assert ready["MAINPID"] == str(worker.pid)
            notify_socket.beats(worker.pid, 3, timeout=3.5)
            worker.send_signal(signal.SIGTERM)
            notify_socket.wait_for("STOPPING", worker.pid, timeout=15)
            assert worker.wait(20) == 0
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{log_path.read_text(errors='replace')[-4000:]}") from None
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        cleanup(worker_home)


# -- the watchdog's decision, on a real event loop in a thread -------------------------------------


@pytest.fixture
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def block(loop: asyncio.AbstractEventLoop) -> threading.Event:
    """Make the loop hang in blocking code until the returned event is set."""
    started, release = threading.Event(), threading.Event()

    def hang() -> None:
        started.set()
        release.wait(10)

    loop.call_soon_threadsafe(hang)
    assert started.wait(5)
    return release


def wait_answered(watchdog: systemd.Watchdog) -> None:
    deadline = time.monotonic() + 5
    while not (watchdog.probe and watchdog.probe.answered()):
        assert time.monotonic() < deadline, "the loop never answered"
        time.sleep(0.01)


def test_watchdog_withholds_beats_while_the_event_loop_hangs(running_loop: asyncio.AbstractEventLoop) -> None:
    stop = threading.Event()
    current: list[asyncio.AbstractEventLoop | None] = [None]
    watchdog = systemd.Watchdog(0.5, stop, lambda: current[0])
    assert not watchdog.healthy()  # no loop yet: not serving, nothing to vouch for
    current[0] = running_loop
    assert not watchdog.healthy()  # first probe sent, not answered yet
    wait_answered(watchdog)
    assert watchdog.healthy()  # answered; sends the next probe
    wait_answered(watchdog)

    release = block(running_loop)
    assert watchdog.healthy()  # the probe before the hang was answered; this one is queued behind it
    assert not watchdog.healthy()  # a loop that does not answer gets no beat
    assert not watchdog.healthy()
    release.set()
    wait_answered(watchdog)
    assert watchdog.healthy()  # beats resume once the loop runs again

    running_loop.call_soon_threadsafe(running_loop.stop)
    deadline = time.monotonic() + 5
    while running_loop.is_running():
        assert time.monotonic() < deadline, "the loop did not stop"
        time.sleep(0.01)
    watchdog.healthy()  # may still count the last answer from before the stop
    assert not watchdog.healthy()  # a stopped loop never answers


def test_watchdog_thread_beats_only_while_the_loop_answers(running_loop: asyncio.AbstractEventLoop,
                                                           notify_socket: NotifySocket,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    stop = threading.Event()
    thread = systemd.Watchdog(0.1, stop, lambda: running_loop).start()
    try:
        notify_socket.beats(os.getpid(), 3, timeout=2)
        release = block(running_loop)
        try:
            while notify_socket.receive(0.001):  # drop beats sent before the hang
                pass
            # at most one more: for the probe the loop answered just before it hung; then silence
            heard = []
            until = time.monotonic() + 1.0  # ten beat intervals
            while (left := until - time.monotonic()) > 0:
                if message := notify_socket.receive(left):
                    heard.append(message)
            assert len(heard) <= 1, f"beats while the loop hung: {heard}"
        finally:
            release.set()
        notify_socket.beats(os.getpid(), 2, timeout=2)
    finally:
        stop.set()
        thread.join(5)


def test_workers_only_watchdog_beats_until_stopped(notify_socket: NotifySocket,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
    stop = threading.Event()
    thread = systemd.Watchdog(0.05, stop).start()
    notify_socket.beats(os.getpid(), 3, timeout=2)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_notify_reaches_an_abstract_socket_and_reports_no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    listener = NotifySocket(f"@nexus-test-{uuid.uuid4().hex}")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
        assert systemd.notify("READY=1\nSTATUS=hello")
        _, pid, fields = listener.wait_for("READY", os.getpid(), timeout=2)
        assert fields == {"READY": "1", "STATUS": "hello"}
    finally:
        listener.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert systemd.notify("READY=1") is False


def test_watchdog_interval_honours_watchdog_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert systemd.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for the process that started us
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", "garbage")
    assert systemd.watchdog_interval() is None
