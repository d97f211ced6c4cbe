"""runs.*: a workflow's run history and one run with all its attempts."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from nexus_core.services import runs as run_service
from nexus_core.services import workflows as wf_service
from nexus_daemon.handlers import Call, Params, method


class ListParams(Params):
    workflow: str = Field(min_length=1, max_length=200)
    limit: int = Field(default=20, ge=1, le=1000)


class GetParams(Params):
    id: str = Field(min_length=4, max_length=32, pattern=r"^[0-9a-f]+$")


@method("runs.list", params=ListParams)
async def list_runs(call: Call, p: ListParams) -> dict[str, Any]:
    def read(conn: Any) -> dict[str, Any]:
        wf = wf_service.find(conn, call.org_id, p.workflow)
        return {"workflow": wf["name"], "runs": run_service.history(conn, call.org_id, wf["id"], p.limit)}

    return await call.daemon.store.aread(read)


@method("runs.get", params=GetParams)
async def get_run(call: Call, p: GetParams) -> dict[str, Any]:
    return await call.daemon.store.aread(run_service.get, call.org_id, p.id)


class RateParams(Params):
    minutes: int = Field(default=60, ge=1, le=1440)


class RerunParams(GetParams):
    confirm: bool = False


@method("runs.rate", params=RateParams)
async def rate(call: Call, p: RateParams) -> dict[str, Any]:
    return await call.daemon.store.aread(run_service.rate, call.org_id, p.minutes)


@method("runs.subscribe", params=Params)
async def subscribe(call: Call, p: Params) -> dict[str, Any]:
    """Push `runs.changed` (coalesced, at most every 250 ms) when runs of the caller's organization change."""
    call.connection.subscriptions.add("runs")
    return {"subscribed": "runs", "notification": "runs.changed"}


@method("runs.rerun", role="operator", params=RerunParams)
async def rerun(call: Call, p: RerunParams) -> dict[str, Any]:
    approval = "confirmed" if p.confirm else "god mode" if call.daemon.modes.is_god(call.actor) else None
    run = await call.daemon.dispatcher.rerun(call.org_id, p.id, call.actor, approval)
    call.extra["workflows"] = [run["workflow"]]
    return run
