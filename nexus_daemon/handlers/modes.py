"""mode.*: the caller's power mode; god mode for admins, with an expiry."""

from __future__ import annotations

from typing import Any, Literal

from nexus_daemon.handlers import Call, Params, method


class SetParams(Params):
    mode: Literal["normal", "god", "ultra"]
    minutes: float | None = None


@method("mode.get", params=Params)
async def get_mode(call: Call, p: Params) -> dict[str, Any]:
    return call.daemon.modes.state(call.operator)


@method("mode.set", params=SetParams)
async def set_mode(call: Call, p: SetParams) -> dict[str, Any]:
    """Enter god mode (admins; `minutes`, or the configured default), go back to normal, or ask for ultra."""
    return await call.daemon.modes.set(call, p.mode, p.minutes)
