"""Wire format: one JSON-RPC 2.0 object per line, at most 1 MiB, errors with a stable `data.kind`."""

from __future__ import annotations

import json
from typing import Any

from nexus_core.errors import NexusError

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 1024 * 1024

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
APPLICATION_ERROR = -32000

_CODES = {"invalid": INVALID_PARAMS, "internal": INTERNAL_ERROR}


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode() + b"\n"


def request(req_id: int | str, method: str, params: dict[str, Any] | None = None) -> bytes:
    return encode({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params or {}})


def result(req_id: Any, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "result": value}


def error(req_id: Any, exc: NexusError, code: int | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id,
            "error": {"code": code or _CODES.get(exc.kind, APPLICATION_ERROR), "message": exc.message,
                      "data": exc.to_data()}}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}
