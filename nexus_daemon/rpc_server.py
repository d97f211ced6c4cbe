"""The Unix-socket JSON-RPC server: framing, handshake, identity, permission, dispatch."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import structlog

from nexus_core.errors import ForbiddenError, InternalError, InvalidError, NexusError, UnavailableError
from nexus_core.rpc import protocol as P
from nexus_daemon import identity
from nexus_daemon.handlers import METHODS, Call, parse_params

if TYPE_CHECKING:
    from nexus_daemon.daemon import Daemon

log = structlog.get_logger("nexus.rpc")
MAX_IN_FLIGHT = 512


class Connection:
    """One client connection; requests on it run concurrently and answer by id."""

    def __init__(self, daemon: "Daemon", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.daemon = daemon
        self.reader = reader
        self.writer = writer
        self.operator: identity.Operator | None = None
        self.org_id: str | None = None
        self.subscriptions: set[str] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def send(self, obj: dict[str, Any]) -> None:
        if self.closed or self.writer.is_closing():
            return
        self.writer.write(P.encode(obj))

    async def serve(self) -> None:
        try:
            peer = identity.peer_credentials(self.writer.get_extra_info("socket"))
            while not self.closed:
                try:
                    line = await self.reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    self.send(P.error(None, InvalidError(
                        f"request is larger than {P.MAX_MESSAGE_BYTES // 1024 // 1024} MiB; send smaller requests"),
                        P.INVALID_REQUEST))
                    break
                except ConnectionError:
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                await self._slots.acquire()
                task = asyncio.create_task(self._handle(line, peer))
                self._tasks.add(task)
                task.add_done_callback(self._done)
                if self.writer.transport.get_write_buffer_size() > 4 * P.MAX_MESSAGE_BYTES:
                    await self.writer.drain()
        finally:
            self.closed = True
            self.daemon.connections.discard(self)
            for task in list(self._tasks):
                task.cancel()
            self.writer.close()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _handle(self, line: bytes, peer: identity.Peer) -> None:
        req_id: Any = None
        started = time.perf_counter()
        name = "?"
        try:
            try:
                msg = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                self.send(P.error(None, InvalidError(f"request is not valid JSON: {exc}"), P.PARSE_ERROR))
                return
            if not isinstance(msg, dict):
                self.send(P.error(None, InvalidError("request must be one JSON object (batches are not supported)"),
                                  P.INVALID_REQUEST))
                return
            req_id = msg.get("id")
            name = msg.get("method")
            if msg.get("jsonrpc") != "2.0" or not isinstance(name, str) or not isinstance(req_id, (int, str, type(None))):
                self.send(P.error(req_id if isinstance(req_id, (int, str)) else None, InvalidError(
                    'a request needs "jsonrpc": "2.0", a string "method" and an integer or string "id"'),
                    P.INVALID_REQUEST))
                return
            value = await self._dispatch(name, msg.get("params"), peer)
            if req_id is not None:
                self.send(P.result(req_id, value))
        except NexusError as exc:
            code = P.METHOD_NOT_FOUND if exc.data.get("reason") == "unknown_method" else None
            if req_id is not None or code:
                self.send(P.error(req_id, exc, code))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the daemon answers every request and keeps running
            log.exception("rpc handler failed", method=name)
            self.send(P.error(req_id, InternalError("internal error in the daemon; details are in its log")))
        finally:
            self.daemon.metrics.observe_rpc(name if name in METHODS else "?", time.perf_counter() - started)

    async def _dispatch(self, name: str, raw_params: Any, peer: identity.Peer) -> Any:
        if self.daemon.stopping and name != "system.handshake":
            raise UnavailableError("the daemon is shutting down; try again when it is back")
        spec = METHODS.get(name)
        if spec is None:
            raise InvalidError(f"unknown method {name!r}", data={"reason": "unknown_method"})
        if name == "system.handshake":
            self.operator = identity.resolve(self.daemon.settings, peer)
            self.org_id = await self.daemon.organization_id(self.operator.organization)
        elif self.operator is None:
            raise InvalidError("the first call on a connection must be system.handshake")
        params = parse_params(spec, raw_params)
        assert self.operator is not None and self.org_id is not None
        operator = self.operator
        if not operator.allows(spec.role):
            raise ForbiddenError(f"{name} needs the {spec.role} role; {operator.name} is {operator.role}")
        modes = self.daemon.modes
        god = modes.is_god(operator.name)
        if spec.mode == "god" and not god:
            raise ForbiddenError(f"{name} needs god mode: `mode:god` (admins only)", data={"reason": "needs_god_mode"})
        call = Call(self.daemon, operator, self.org_id, self)
        if god and modes.audited(spec):
            return await modes.call_logged(spec, call, params)
        return await spec.handler(call, params)
