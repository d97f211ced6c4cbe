"""Fixtures: real daemons on real sockets, against SQLite always and Postgres / external Redis when given."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from nexus_core.store import migrate
from nexus_core.store.db import Store
from nexus_core.testing import DaemonProcess, cleanup, short_tempdir

REDIS_URL = os.environ.get("NEXUS_TEST_REDIS_URL")
DATABASE_URL = os.environ.get("NEXUS_TEST_DATABASE_URL")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _check_services() -> None:
    """In CI a configured service that is down fails the run instead of skipping tests."""
    problems = []
    if IN_CI and not REDIS_URL:
        problems.append("NEXUS_TEST_REDIS_URL is not set")
    if IN_CI and not DATABASE_URL:
        problems.append("NEXUS_TEST_DATABASE_URL is not set")
    if REDIS_URL:
        import redis

        try:
            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
            client.ping()
            client.close()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"Redis at {REDIS_URL} is unreachable: {exc}")
    if DATABASE_URL:
        import psycopg

        try:
            psycopg.connect(DATABASE_URL.replace("+psycopg", ""), connect_timeout=3).close()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"Postgres at {DATABASE_URL} is unreachable: {exc}")
    if problems:
        pytest.exit("test services missing: " + "; ".join(problems), returncode=3)


def pytest_sessionstart(session: pytest.Session) -> None:
    _check_services()


@pytest.fixture
def home() -> Iterator[object]:
    path = short_tempdir()
    yield path
    cleanup(path)


class PostgresDatabases:
    """A fresh database per test on the configured server, dropped afterwards."""

    def __init__(self, url: str):
        self.url = url.replace("postgresql+psycopg://", "postgresql://")

    def create(self) -> str:
        import psycopg

        name = f"nexus_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = self.url.rpartition("/")
        return f"{base}/{name}"

    def drop(self, url: str) -> None:
        import psycopg

        name = url.rpartition("/")[2]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BACKENDS = ["sqlite"] + (["postgres"] if DATABASE_URL else [])
BROKERS = ["embedded"] + (["external"] if REDIS_URL else [])


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    pg = PostgresDatabases(DATABASE_URL or "")
    url = pg.create()
    yield url
    pg.drop(url)


@pytest.fixture
def make_daemon(home):  # type: ignore[no-untyped-def]
    """Build (not start) daemons in this test's folder; all are stopped at the end."""
    made: list[DaemonProcess] = []

    def make(**kw):  # type: ignore[no-untyped-def]
        daemon = DaemonProcess(home, **kw)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        try:
            daemon.stop()
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture
def daemon(make_daemon, database_url):  # type: ignore[no-untyped-def]
    """A running daemon with embedded Redis, on SQLite and (when configured) Postgres."""
    return make_daemon(database_url=database_url).start()


@pytest.fixture(params=BROKERS)
def any_broker_daemon(request, make_daemon, database_url):  # type: ignore[no-untyped-def]
    """A running daemon on each broker set-up: embedded Redis, and the external one when configured."""
    if request.param == "external":
        return make_daemon(database_url=database_url, redis_url=REDIS_URL,
                           redis_namespace=f"nxt{uuid.uuid4().hex[:10]}").start()
    return make_daemon(database_url=database_url).start()


@pytest.fixture
def url(home: Any, database_url: str | None) -> str:
    """The store's URL for in-process tests: each backend of `database_url`, SQLite in the test's folder."""
    return database_url or f"sqlite:///{home}/nexus.db"


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    """A migrated store, in this process (for the scheduler and services without a daemon)."""
    s = Store(url)
    migrate.upgrade(s.engine)
    yield s
    s.close()
