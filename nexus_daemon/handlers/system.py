"""system.*: the handshake, health and metrics."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from pydantic import Field

from nexus_core import __version__
from nexus_core.errors import InvalidError
from nexus_core.rpc.protocol import PROTOCOL_VERSION
from nexus_core.services import activity
from nexus_daemon.handlers import Call, Params, method


class HandshakeParams(Params):
    protocol: int = PROTOCOL_VERSION
    client: str = Field(default="unknown", max_length=100)
    version: str = Field(default="", max_length=50)


@method("system.handshake", params=HandshakeParams)
async def handshake(call: Call, p: HandshakeParams) -> dict[str, Any]:
    if p.protocol != PROTOCOL_VERSION:
        raise InvalidError(f"protocol {p.protocol} is not spoken here; this daemon speaks {PROTOCOL_VERSION}: "
                           "upgrade the client and the daemon together", field="protocol")
    op = call.operator
    return {"protocol": PROTOCOL_VERSION, "version": __version__, "daemon_pid": call.daemon.pid,
            "operator": {"name": op.name, "uid": op.uid, "role": op.role, "organization": op.organization},
            "version_mismatch": bool(p.version and p.version != __version__), "mode": call.daemon.modes.state(op)}


@method("system.ping")
async def ping(call: Call, p: Params) -> str:
    return "pong"


@method("system.health")
async def health(call: Call, p: Params) -> dict[str, Any]:
    return await call.daemon.health()


@method("system.stop", role="admin")
async def stop(call: Call, p: Params) -> dict[str, Any]:
    daemon = call.daemon
    await daemon.store.awrite(activity.record, call.org_id, call.actor, "daemon.stop",
                              message=f"{call.actor} stopped the daemon (pid {daemon.pid})")
    # The same path as SIGTERM, a moment later so this answer still reaches the caller.
    asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
    return {"pid": daemon.pid, "grace_s": daemon.settings.shutdown_grace}


@method("system.metrics")
async def metrics(call: Call, p: Params) -> dict[str, Any]:
    return call.daemon.metrics.snapshot()
