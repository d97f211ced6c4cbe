"""The one error tree of Nexus; every error carries a message a person can act on.

    NexusError                  kind        CLI exit
    ├── InvalidError            invalid     2   bad input, refused before anything is written
    ├── NotFoundError           not_found   4
    ├── ForbiddenError          forbidden   5
    ├── ConflictError           conflict    2   duplicate name, state that does not allow it
    ├── UnavailableError        unavailable 3   daemon, database or Redis not reachable
    │   └── DaemonUnreachableError
    ├── ExecutionError          failed      1   a workflow run failed (kinds raise this)
    └── InternalError           internal    1   a bug; details are in the daemon log
"""

from __future__ import annotations

from typing import Any


class NexusError(Exception):
    """Root of every error Nexus raises on purpose."""

    kind = "internal"
    exit_code = 1

    def __init__(self, message: str, *, field: str | None = None, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.data = dict(data or {})

    def to_data(self) -> dict[str, Any]:
        """The JSON-RPC `error.data` object: a stable kind plus optional details."""
        out: dict[str, Any] = {"kind": self.kind, **self.data}
        if self.field:
            out["field"] = self.field
        return out


class InvalidError(NexusError):
    kind = "invalid"
    exit_code = 2


class NotFoundError(NexusError):
    kind = "not_found"
    exit_code = 4


class ForbiddenError(NexusError):
    kind = "forbidden"
    exit_code = 5


class ConflictError(NexusError):
    kind = "conflict"
    exit_code = 2


class UnavailableError(NexusError):
    kind = "unavailable"
    exit_code = 3


class DaemonUnreachableError(UnavailableError):
    """No daemon answers on the socket."""


class ExecutionError(NexusError):
    """A workflow's work failed; `output` is the tail of what it printed."""

    kind = "failed"
    exit_code = 1

    def __init__(self, message: str, *, output: str = "", retryable: bool = True, **kw: Any):
        super().__init__(message, **kw)
        self.output = output
        self.retryable = retryable


class InternalError(NexusError):
    kind = "internal"
    exit_code = 1


_BY_KIND: dict[str, type[NexusError]] = {
    cls.kind: cls
    for cls in (InvalidError, NotFoundError, ForbiddenError, ConflictError, UnavailableError, ExecutionError, InternalError)
}


def error_from_kind(kind: str, message: str, data: dict[str, Any] | None = None) -> NexusError:
    """Rebuild an error received over RPC from its stable kind."""
    cls = _BY_KIND.get(kind, InternalError)
    data = dict(data or {})
    data.pop("kind", None)
    field = data.pop("field", None)
    return cls(message, field=field, data=data)
