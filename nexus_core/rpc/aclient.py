"""An asyncio JSON-RPC client for long-lived callers (the TUI): concurrent calls, pushed notifications."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexus_core import __version__
from nexus_core.errors import DaemonUnreachableError, InternalError, NexusError, error_from_kind
from nexus_core.rpc.protocol import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, request

#: Answers can be far larger than requests (10,000 workflows in one list).
MAX_ANSWER_BYTES = 64 * MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class CallTiming:
    """One finished call, for the TUI's debug pane."""

    method: str
    ms: float
    ok: bool
    at: float


class AsyncClient:
    """One connection to the daemon; `call` may be awaited from many tasks at once."""

    def __init__(self, socket_path: Path, *, client_name: str = "nexus-tui",
                 on_notification: Callable[[str, dict[str, Any]], None] | None = None,
                 on_disconnect: Callable[[NexusError], None] | None = None):
        self.socket_path = Path(socket_path)
        self.client_name = client_name
        self.on_notification = on_notification
        self.on_disconnect = on_disconnect
        self.hello: dict[str, Any] = {}
        self.timings: deque[CallTiming] = deque(maxlen=200)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._read_task: asyncio.Task[None] | None = None
        self.closed = True

    async def connect(self, timeout: float = 5.0) -> dict[str, Any]:
        """Open the connection and handshake; raises DaemonUnreachableError when nobody answers."""
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.socket_path), limit=MAX_ANSWER_BYTES), timeout)
        except (FileNotFoundError, ConnectionRefusedError, asyncio.TimeoutError) as exc:
            raise DaemonUnreachableError(f"no daemon answers on {self.socket_path} "
                                         f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
        except PermissionError:
            raise DaemonUnreachableError(
                f"permission denied on {self.socket_path}: your user must be in the socket's group "
                "(daemon.socket_group in nexus.toml)") from None
        except OSError as exc:
            raise DaemonUnreachableError(f"cannot reach the daemon on {self.socket_path}: {exc}") from None
        self.closed = False
        self._read_task = asyncio.create_task(self._read_loop(), name="nexus-rpc-reader")
        try:
            self.hello = await self.call("system.handshake", {"protocol": PROTOCOL_VERSION,
                                                              "client": self.client_name, "version": __version__},
                                         timeout=timeout)
        except BaseException:
            await self.close()
            raise
        return self.hello

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = 60.0) -> Any:
        if self.closed or self._writer is None:
            raise DaemonUnreachableError("not connected to the daemon")
        self._next_id += 1
        req_id = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        started = time.perf_counter()
        ok = False
        try:
            self._writer.write(request(req_id, method, params))
            await self._writer.drain()
            result = await asyncio.wait_for(fut, timeout)
            ok = True
            return result
        except asyncio.TimeoutError:
            raise DaemonUnreachableError(f"the daemon did not answer {method} within {timeout:.0f}s") from None
        except (ConnectionError, OSError) as exc:
            raise DaemonUnreachableError(f"connection to the daemon failed: {exc}") from None
        finally:
            self._pending.pop(req_id, None)
            self.timings.append(CallTiming(method, (time.perf_counter() - started) * 1000, ok, time.time()))

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reason: NexusError = DaemonUnreachableError("the daemon closed the connection")
        try:
            while True:
                try:
                    line = await self._reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    reason = InternalError("an answer from the daemon was too large")
                    break
                except (ConnectionError, OSError) as exc:
                    reason = DaemonUnreachableError(f"connection to the daemon failed: {exc}")
                    break
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(msg, dict):
                    continue
                if "id" not in msg or msg.get("id") is None and "method" in msg:
                    if self.on_notification is not None and isinstance(msg.get("method"), str):
                        self.on_notification(msg["method"], msg.get("params") or {})
                    continue
                fut = self._pending.get(msg["id"]) if isinstance(msg.get("id"), int) else None
                if fut is None or fut.done():
                    continue
                if "error" in msg:
                    err = msg["error"] or {}
                    data = err.get("data") or {}
                    fut.set_exception(error_from_kind(data.get("kind", "internal"),
                                                      err.get("message", "unknown error"), data))
                else:
                    fut.set_result(msg.get("result"))
        except asyncio.CancelledError:
            reason = DaemonUnreachableError("the connection was closed")
            raise
        finally:
            self._fail_all(reason)

    def _fail_all(self, reason: NexusError) -> None:
        was_open = not self.closed
        self.closed = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(reason)
        self._pending.clear()
        if self._writer is not None:
            self._writer.close()
        if was_open and self.on_disconnect is not None:
            self.on_disconnect(reason)

    async def close(self) -> None:
        """Close the connection; pending calls fail, on_disconnect is not called."""
        self.on_disconnect = None
        if self._read_task is not None:
            self._read_task.cancel()
            try:
                await self._read_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing
                pass
            self._read_task = None
        self._fail_all(DaemonUnreachableError("the connection was closed"))
