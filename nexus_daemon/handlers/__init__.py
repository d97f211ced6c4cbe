"""RPC method table: each handler declares the role it needs and the pydantic model of its params."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from nexus_core.errors import InvalidError

if TYPE_CHECKING:
    from nexus_daemon.daemon import Daemon
    from nexus_daemon.identity import Operator
    from nexus_daemon.rpc_server import Connection


class Params(BaseModel):
    """Base of every params model: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", str_max_length=100_000)


class NoParams(Params):
    pass


@dataclass
class Call:
    """One request's context: the daemon, who is calling, and their connection."""

    daemon: "Daemon"
    operator: "Operator"
    org_id: str
    connection: "Connection"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        return self.operator.name


Handler = Callable[[Call, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    name: str
    role: str
    params: type[Params]
    handler: Handler
    mode: str | None = None
    """A power mode the caller must be in ("god"), checked by the RPC server after the role."""


METHODS: dict[str, Method] = {}


def method(name: str, *, role: str = "viewer", params: type[Params] = NoParams,
           mode: str | None = None) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name] = Method(name, role, params, fn, mode)
        return fn

    return register


def parse_params(spec: Method, raw: Any) -> Any:
    """Validate raw params with the method's model; the first problem becomes an InvalidError naming the field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidError("params must be a JSON object", field="params")
    try:
        return spec.params.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        raise InvalidError(f"{where}: {first['msg']}", field=where) from None


def load_all() -> None:
    for module in ("system", "workflows", "runs", "activity", "modes", "console"):
        importlib.import_module(f"{__name__}.{module}")
