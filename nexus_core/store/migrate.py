"""Apply Alembic migrations: at daemon start, and by `nexus db:upgrade` on servers."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(url: str, connection: sa.Connection | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = url
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def pending(engine: sa.Engine) -> bool:
    """True when the database is not at the newest revision."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(_config(str(engine.url))).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current != heads


def upgrade(engine: sa.Engine) -> bool:
    """Bring the schema to the newest revision; returns whether anything was applied."""
    if not pending(engine):
        return False
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_config(str(engine.url), conn), "head")
    return True


def revision(url: str, message: str) -> None:
    """Autogenerate a new migration from the models (developer use)."""
    from alembic import command

    command.revision(_config(url), message=message, autogenerate=True)
