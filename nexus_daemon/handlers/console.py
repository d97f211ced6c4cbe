"""db.*: the read-only SQL console, for admins in god mode."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from pydantic import Field

from nexus_core.errors import ForbiddenError
from nexus_core.services import console
from nexus_core.store.models import orgs_table as O
from nexus_daemon.handlers import Call, Params, method


class QueryParams(Params):
    sql: str = Field(min_length=1, max_length=10_000)
    limit: int = Field(default=200, ge=1, le=1000)


@method("db.query", role="admin", params=QueryParams, mode="god")
async def query(call: Call, p: QueryParams) -> dict[str, Any]:
    """Run one read-only SELECT (WITH, EXPLAIN, VALUES) and answer its rows with secrets masked."""
    store = call.daemon.store
    url = store.url
    password = sa.engine.make_url(url).password

    home = call.daemon.settings.organization

    def run() -> dict[str, Any]:
        # Checked before any connection is opened: a refused statement never reaches the database.
        console.check_sql(p.sql, store.dialect)
        with store.read() as conn:
            # SQL reads every organization's rows: with more than one in the store, only the admins of
            # the daemon's own organization (those who run the server) may use it.
            orgs = conn.execute(sa.select(sa.func.count()).select_from(O)).scalar_one()
            if call.operator.organization != home and orgs > 1:
                raise ForbiddenError(
                    f"db:query reads the whole store, every organization's rows, so it is for admins of the daemon's "
                    f"own organization ({home!r}); you are an admin of {call.operator.organization!r}")
            secrets = set(console.secrets_for(conn, url))
        if password:
            secrets.add(str(password))
        return console.run_query(url, p.sql, p.limit, console.Scrubber(secrets))

    return await asyncio.to_thread(run)
