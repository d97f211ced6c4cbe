"""A real HTTP server on 127.0.0.1 that records every request and answers as told, for webhook tests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recorded:
    """One request as the sink received it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0


class HttpSink:
    """`with HttpSink() as sink:` serves on `sink.url`; `sink.reply("/x", 500)` sets how a path answers."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._replies: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with sink._lock:
                    sink.requests.append(Recorded(self.command, self.path,
                                                  {k.lower(): v for k, v in self.headers.items()}, body))
                    reply = sink._replies.get(self.path.split("?", 1)[0], Reply())
                if reply.delay:
                    # Waits on the closing event so that closing the sink never hangs on a slow reply.
                    sink._closing.wait(reply.delay)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (a timeout test): nothing to answer

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="http-sink", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reply(self, path: str, status: int, body: bytes | str = b"", delay: float = 0.0) -> None:
        """Answer requests to `path` (query string ignored) with this status and body, after `delay` seconds."""
        with self._lock:
            self._replies[path] = Reply(status, body.encode() if isinstance(body, str) else body, delay)

    def __enter__(self) -> "HttpSink":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
