"""Power modes, held in memory per operator: god mode for admins until it expires; ultra is not available yet.

A mode raises what an operator may do (god-only methods, triggering without a separate approval),
never who they are: role checks stay as they are. Every call in god mode that is not a read is
written to the activity log as `god.call`, naming the method and workflows, never a payload.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from nexus_core.config import MAX_GOD_MINUTES
from nexus_core.errors import ForbiddenError, InvalidError, NexusError
from nexus_core.rpc import protocol as P
from nexus_core.services import activity
from nexus_core.store.types import utcnow

if TYPE_CHECKING:
    from nexus_daemon.daemon import Daemon
    from nexus_daemon.handlers import Call, Method
    from nexus_daemon.identity import Operator

log = structlog.get_logger("nexus.modes")
SQL_IN_LOG = 200
NAMES_IN_MESSAGE = 10


@dataclass
class _Grant:
    expires_at: datetime
    org_id: str
    timer: asyncio.TimerHandle | None = None


def _minutes_text(minutes: float) -> str:
    return f"{minutes:g} min"


class Modes:
    """Who is in god mode until when; the daemon's event loop owns it (handlers and timers only)."""

    def __init__(self, daemon: "Daemon"):
        self.daemon = daemon
        self._god: dict[str, _Grant] = {}
        self._tasks: set[asyncio.Future[None]] = set()

    def is_god(self, name: str) -> bool:
        grant = self._god.get(name)
        return grant is not None and grant.expires_at > utcnow()

    def state(self, operator: "Operator") -> dict[str, Any]:
        """The answer of mode.get, of mode.set, and the params of mode.changed."""
        grant = self._god.get(operator.name) if self.is_god(operator.name) else None
        minutes = self.daemon.settings.god_minutes
        return {"mode": "god" if grant else "normal", "expires_at": grant.expires_at.isoformat() if grant else None,
                "god_minutes": int(minutes) if float(minutes).is_integer() else minutes,
                "available": ["normal", "god"] if operator.role == "admin" else ["normal"]}

    async def set(self, call: "Call", mode: str, minutes: float | None) -> dict[str, Any]:
        op = call.operator
        if mode == "ultra":
            raise InvalidError("ultra mode (autonomous AI) is not available yet: it arrives with the AI integration",
                               field="mode", data={"reason": "not_available"})
        store = self.daemon.store
        assert store is not None
        if mode == "god":
            if op.role != "admin":
                raise ForbiddenError(f"god mode is for admins; {op.name} is {op.role}")
            minutes = self.daemon.settings.god_minutes if minutes is None else minutes
            if not 0 < minutes <= MAX_GOD_MINUTES:
                raise InvalidError(f"minutes must be more than 0 and at most {MAX_GOD_MINUTES:g}, got {minutes:g}",
                                   field="minutes")
            expires = utcnow() + timedelta(minutes=minutes)
            # Logged before it takes effect: when the log cannot be written, god mode is not entered.
            await store.awrite(activity.record, call.org_id, op.name, "mode.god", level="warning",
                               message=f"{op.name} entered god mode for {_minutes_text(minutes)}",
                               data={"minutes": minutes, "expires_at": expires.isoformat()})
            self._cancel(op.name)
            loop = asyncio.get_running_loop()
            grant = _Grant(expires, call.org_id)
            grant.timer = loop.call_later(minutes * 60, self._expire, op, expires)
            self._god[op.name] = grant
        elif self._god.get(op.name) is not None:
            was_god = self.is_god(op.name)
            self._cancel(op.name)
            if was_god:
                await store.awrite(activity.record, call.org_id, op.name, "mode.normal",
                                   message=f"{op.name} left god mode")
        self._announce(op)
        return self.state(op)

    def _cancel(self, name: str) -> None:
        grant = self._god.pop(name, None)
        if grant is not None and grant.timer is not None:
            grant.timer.cancel()

    def _expire(self, op: "Operator", expires: datetime) -> None:
        grant = self._god.get(op.name)
        if grant is None or grant.expires_at != expires:
            return  # left or renewed meanwhile
        del self._god[op.name]
        self._announce(op)
        task = asyncio.ensure_future(self._log_expiry(op, grant.org_id))
        self._tasks.add(task)  # held until done: the loop keeps only a weak reference to tasks
        task.add_done_callback(self._tasks.discard)

    async def _log_expiry(self, op: "Operator", org_id: str) -> None:
        try:
            assert self.daemon.store is not None
            await self.daemon.store.awrite(activity.record, org_id, op.name, "mode.expired",
                                           message=f"{op.name}'s god mode expired; back to normal")
        except Exception as exc:  # noqa: BLE001 - the mode has ended either way
            log.warning("could not log the end of god mode", operator=op.name, error=str(exc))

    def _announce(self, op: "Operator") -> None:
        message = P.notification("mode.changed", self.state(op))
        for conn in list(self.daemon.connections):
            if conn.operator is not None and conn.operator.name == op.name:
                conn.send(message)

    # -- the god-mode audit --------------------------------------------------------------------

    @staticmethod
    def audited(spec: "Method") -> bool:
        """Calls written to the log in god mode: all but reads (viewer methods that are not god-only)."""
        return spec.role != "viewer" or spec.mode == "god"

    async def call_logged(self, spec: "Method", call: "Call", params: Any) -> Any:
        """Run a call made in god mode and write it to the activity log, whether it succeeded or not."""
        try:
            result = await spec.handler(call, params)
        except NexusError as exc:
            await self._log_call(spec.name, call, params, exc.kind)
            raise
        except Exception:
            await self._log_call(spec.name, call, params, "internal")
            raise
        await self._log_call(spec.name, call, params, None)
        return result

    async def _log_call(self, method: str, call: "Call", params: Any, error: str | None) -> None:
        names = _workflow_names(params) + [n for n in call.extra.get("workflows", ()) if isinstance(n, str)]
        names = list(dict.fromkeys(names))
        data: dict[str, Any] = {"method": method, "mode": "god"}
        message = f"{call.actor} (god mode) {method}"
        if names:
            data["workflows"] = names
            shown = ", ".join(names[:NAMES_IN_MESSAGE])
            message += f" {shown}" + (f" and {len(names) - NAMES_IN_MESSAGE} more" if len(names) > NAMES_IN_MESSAGE
                                      else "")
        sql = getattr(params, "sql", None)
        if isinstance(sql, str):
            data["sql"] = sql[:SQL_IN_LOG]
            message += f" {' '.join(sql.split())[:SQL_IN_LOG]}"
        if error:
            data["error"] = error
            message += f" (refused: {error})"
        try:
            assert self.daemon.store is not None
            await self.daemon.store.awrite(activity.record, call.org_id, call.actor, "god.call",
                                           target=names[0] if len(names) == 1 else None,
                                           level="warning" if error else "info", message=message, data=data)
        except Exception as exc:  # noqa: BLE001 - the call has happened; say so in the daemon's own log
            log.warning("could not write a god-mode call to the activity log", method=method, error=str(exc))


def _workflow_names(params: Any) -> list[str]:
    """The workflow names a call's params name (name, names, or the workflows of an apply), nothing else."""
    out: list[str] = []
    name = getattr(params, "name", None)
    if isinstance(name, str):
        out.append(name)
    names = getattr(params, "names", None)
    if isinstance(names, list):
        out += [n for n in names if isinstance(n, str)]
    for spec in getattr(params, "workflows", None) or ():
        if isinstance(getattr(spec, "name", None), str):
            out.append(spec.name)
    return out
