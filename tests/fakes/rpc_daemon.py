"""A stand-in daemon on a real Unix socket that answers JSON-RPC with fixed data, for pixel-stable TUI snapshots.

Behaviour tests use the real daemon; this exists only so snapshot SVGs do not change with every run's ids
and clock. It speaks the same wire format: one JSON object per line, a handshake first, pushes as
notifications.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

Answer = Any | Callable[[dict[str, Any]], Any]


class FakeDaemon:
    """`answers` maps a method to its result (or a function of the params); unknown methods get -32601."""

    def __init__(self, socket_path: Path, answers: dict[str, Answer]):
        self.socket_path = socket_path
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._loop = asyncio.new_event_loop()
        self._writers: list[asyncio.StreamWriter] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "FakeDaemon":
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def shut() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shut(), self._loop)
        self._thread.join(5)
        self._loop.close()

    def push(self, method: str, params: dict[str, Any]) -> None:
        line = json.dumps({"jsonrpc": "2.0", "method": method, "params": params}).encode() + b"\n"

        def send() -> None:
            for writer in self._writers:
                writer.write(line)

        self._loop.call_soon_threadsafe(send)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_unix_server(self._serve,
                                                                                path=str(self.socket_path)))
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                method, params = msg["method"], msg.get("params") or {}
                self.calls.append((method, params))
                if method not in self.answers:
                    reply = {"error": {"code": -32601, "message": f"unknown method {method!r}",
                                       "data": {"kind": "invalid", "reason": "unknown_method"}}}
                else:
                    answer = self.answers[method]
                    reply = {"result": answer(params) if callable(answer) else answer}
                writer.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], **reply}).encode() + b"\n")
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
