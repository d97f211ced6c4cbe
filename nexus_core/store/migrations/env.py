"""Alembic environment: the URL and connection come from Nexus, never from an ini file."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import nexus_core.store.models  # noqa: F401  (registers the tables)
from nexus_core.store.db import create_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.attributes["url"])
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    if connection.dialect.name == "sqlite":
        # Batch rebuilds of SQLite tables fail with foreign keys enforced.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two daemons starting together must not both migrate.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7312001)")
        context.run_migrations()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")


run_migrations_online()
