"""workflows.*: list, show, create, edit, delete, pause, resume, trigger, apply, stats."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import structlog
from pydantic import Field, StringConstraints

from nexus_core.errors import InvalidError, NexusError
from nexus_core.services import runs as run_service
from nexus_core.services import workflows as wf_service
from nexus_core.store.types import utcnow
from nexus_daemon.handlers import Call, Params, method

log = structlog.get_logger("nexus.rpc")
Name = Field(min_length=1, max_length=200)
NameText = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ListParams(Params):
    status: Literal["active", "paused", "error", "completed", "scheduled"] | None = None
    names: list[NameText] | None = Field(default=None, max_length=10_000)
    limit: int | None = Field(default=None, ge=1, le=1_000_000)


class NameParams(Params):
    name: str = Name


class Spec(Params):
    """A workflow definition as sent by auto:create, auto:edit and auto:apply; checked again in depth."""

    name: str | None = Field(default=None, max_length=200)
    kind: str | None = Field(default=None, max_length=64)
    cron: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    at: str | None = Field(default=None, max_length=64)
    payload: dict[str, Any] | str | None = None
    retries: int | None = None
    backoff: float | None = None
    timeout: float | None = None
    description: str | None = Field(default=None, max_length=10_000)
    requires_approval: bool | None = None
    misfire: str | None = Field(default=None, max_length=16)
    max_catchup: int | None = None
    grace: float | None = None
    overlap: str | None = Field(default=None, max_length=16)


class UpdateParams(Params):
    name: str = Name
    changes: Spec


class TriggerParams(NameParams):
    confirm: bool = False
    wait: bool = False
    wait_timeout: float = Field(default=3600.0, gt=0, le=86400)


class NextParams(NameParams):
    count: int = Field(default=5, ge=1, le=100)


class BulkParams(Params):
    action: Literal["trigger", "pause", "resume", "delete"]
    names: list[NameText] = Field(min_length=1, max_length=1000)


class ApplyParams(Params):
    workflows: list[Spec] = Field(max_length=10_000)


def _spec(spec: Spec) -> dict[str, Any]:
    return spec.model_dump(exclude_unset=True)


def _delete(conn: Any, org: str, actor: str, name: str) -> tuple[str, dict[str, Any]]:
    """Delete a workflow; its id too, for the scheduler to drop."""
    wf_id = wf_service.find(conn, org, name)["id"]
    return wf_id, wf_service.delete(conn, org, actor, name)


@method("workflows.list", params=ListParams)
async def list_workflows(call: Call, p: ListParams) -> list[dict[str, Any]]:
    return await call.daemon.store.aread(wf_service.list_all, call.org_id, p.status, p.names, p.limit)


@method("workflows.get", params=NameParams)
async def get_workflow(call: Call, p: NameParams) -> dict[str, Any]:
    def read(conn: Any) -> dict[str, Any]:
        wf = wf_service.find(conn, call.org_id, p.name)
        out = wf_service.public(wf)
        out["recent_runs"] = run_service.history(conn, call.org_id, wf["id"], limit=10)
        return out

    return await call.daemon.store.aread(read)


@method("workflows.create", role="operator", params=Spec)
async def create_workflow(call: Call, p: Spec) -> dict[str, Any]:
    values = wf_service.validate_spec(_spec(p), current=None, default_tz=call.daemon.settings.timezone,
                                      role=call.operator.role)
    result = await call.daemon.store.awrite(wf_service.create, call.org_id, call.actor, values)
    call.daemon.schedule_changed([result["id"]])
    return result


@method("workflows.update", role="operator", params=UpdateParams)
async def update_workflow(call: Call, p: UpdateParams) -> dict[str, Any]:
    changes = _spec(p.changes)
    if not changes:
        raise InvalidError("nothing to change: give at least one option, e.g. --cron or --payload", field="changes")

    def write(conn: Any) -> dict[str, Any]:
        current = wf_service.find(conn, call.org_id, p.name)
        values = wf_service.validate_spec(changes, current=current, default_tz=call.daemon.settings.timezone,
                                          role=call.operator.role)
        return wf_service.update(conn, call.org_id, call.actor, p.name, values)

    result = await call.daemon.store.awrite(write)
    call.daemon.schedule_changed([result["id"]])
    return result


@method("workflows.delete", role="operator", params=NameParams)
async def delete_workflow(call: Call, p: NameParams) -> dict[str, Any]:
    wf_id, result = await call.daemon.store.awrite(_delete, call.org_id, call.actor, p.name)
    call.daemon.schedule_changed([wf_id])
    return result


@method("workflows.pause", role="operator", params=NameParams)
async def pause_workflow(call: Call, p: NameParams) -> dict[str, Any]:
    result = await call.daemon.store.awrite(wf_service.set_status, call.org_id, call.actor, p.name, "paused")
    call.daemon.schedule_changed([result["id"]])
    return result


@method("workflows.resume", role="operator", params=NameParams)
async def resume_workflow(call: Call, p: NameParams) -> dict[str, Any]:
    result = await call.daemon.store.awrite(wf_service.set_status, call.org_id, call.actor, p.name, "active")
    call.daemon.schedule_changed([result["id"]])
    return result


@method("workflows.next", params=NextParams)
async def next_fires(call: Call, p: NextParams) -> dict[str, Any]:
    wf = await call.daemon.store.aread(wf_service.find, call.org_id, p.name)
    return wf_service.upcoming(wf, p.count)


@method("workflows.trigger", role="operator", params=TriggerParams)
async def trigger_workflow(call: Call, p: TriggerParams) -> dict[str, Any]:
    approval = "confirmed" if p.confirm else "god mode" if call.daemon.modes.is_god(call.actor) else None
    run = await call.daemon.dispatcher.trigger(call.org_id, p.name, call.actor, approval=approval)
    if p.wait:
        return await call.daemon.dispatcher.wait(call.org_id, run["id"], p.wait_timeout)
    return run


@method("workflows.apply", role="operator", params=ApplyParams)
async def apply_workflows(call: Call, p: ApplyParams) -> dict[str, Any]:
    specs = [_spec(s) for s in p.workflows]
    names = [s.get("name") for s in specs]
    dupes = sorted({n for n in names if n and names.count(n) > 1})
    if dupes:
        raise InvalidError(f"the file defines {', '.join(dupes)} more than once", field="name")

    def write(conn: Any) -> dict[str, Any]:
        # Validate every entry before writing any, so a bad file changes nothing.
        planned = []
        now = utcnow()  # one for the whole file: its schedules are worked out once each
        for i, spec in enumerate(specs):
            if not spec.get("name"):
                raise InvalidError(f"workflow #{i + 1} has no name", field=f"workflows[{i}].name")
            try:
                current = wf_service.find(conn, call.org_id, spec["name"])
            except Exception:  # noqa: BLE001 - not found means create
                current = None
            try:
                values = wf_service.validate_spec(spec if current is None else {k: v for k, v in spec.items()
                                                                                  if k != "name"},
                                                  current=current, default_tz=call.daemon.settings.timezone,
                                                  role=call.operator.role, now=now)
            except InvalidError as exc:
                raise InvalidError(f"workflow {spec['name']!r}: {exc.message}",
                                   field=f"{spec['name']}.{exc.field or ''}".rstrip(".")) from None
            planned.append((spec["name"], current, values))
        out: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": []}
        for name, current, values in planned:
            if current is None:
                changed.append(wf_service.create(conn, call.org_id, call.actor, values, now)["id"])
                out["created"].append(name)
            elif any(current.get(k) != v for k, v in values.items()):
                changed.append(wf_service.update(conn, call.org_id, call.actor, name, values, now)["id"])
                out["updated"].append(name)
            else:
                out["unchanged"].append(name)
        return out

    changed: list[str] = []
    # A long transaction (up to 10,000 workflows): on its own, so workers' claims never wait behind it.
    result = await call.daemon.store.awrite_bulk(write)
    call.daemon.schedule_changed(changed)  # exactly these, now that they are committed
    return result


@method("workflows.stats", params=Params)
async def workflow_stats(call: Call, p: Params) -> dict[str, Any]:
    return await call.daemon.store.aread(wf_service.stats, call.org_id)


@method("workflows.bulk", role="operator", params=BulkParams, mode="god")
async def bulk(call: Call, p: BulkParams) -> dict[str, Any]:
    """One action on many workflows, each its own operation: one that fails does not stop the others."""
    daemon, org, actor = call.daemon, call.org_id, call.actor
    names = list(dict.fromkeys(p.names))

    async def one(name: str) -> Any:
        if p.action == "trigger":  # god mode is the approval
            return await daemon.dispatcher.trigger(org, name, actor, approval="god mode")
        if p.action == "delete":
            wf_id, result = await daemon.store.awrite(_delete, org, actor, name)
            changed.append(wf_id)
            return result
        status = "paused" if p.action == "pause" else "active"
        result = await daemon.store.awrite(wf_service.set_status, org, actor, name, status)
        changed.append(result["id"])
        return result

    changed: list[str] = []

    # Concurrently, so the store's writer commits them in shared transactions (each still its own
    # operation: a batch with a failure is redone one write at a time).
    outcomes = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
    done, failed = [], {}
    for name, outcome in zip(names, outcomes):
        if isinstance(outcome, NexusError):
            failed[name] = outcome.message
        elif isinstance(outcome, BaseException):
            log.error("bulk action failed", action=p.action, workflow=name, error=repr(outcome))
            failed[name] = "internal error in the daemon; details are in its log"
        else:
            done.append(name)
    if changed:
        daemon.schedule_changed(changed)
    return {"action": p.action, "done": done, "failed": failed}
