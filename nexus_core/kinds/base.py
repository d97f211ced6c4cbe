"""The shape every workflow kind has: validate a payload up front, execute it in a worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

OUTPUT_TAIL_CHARS = 16_384
"""How much of a run's output is kept: the last this many characters."""


def tail(text: str, limit: int = OUTPUT_TAIL_CHARS) -> str:
    """The bounded tail of `text`, marked when something was cut."""
    if len(text) <= limit:
        return text
    return "…[truncated]\n" + text[-limit:]


@dataclass(frozen=True)
class RunContext:
    """What a kind gets to execute one attempt of one run."""

    run_id: str
    workflow_id: str
    workflow_name: str
    organization_id: str
    attempt: int
    trigger: str
    payload: dict[str, Any]
    timeout: float
    """Seconds this attempt may take; the kind must stop by then and raise ExecutionError."""
    secrets: dict[str, str] = field(default_factory=dict)
    """Secrets resolved for this workflow (never logged, never returned over RPC)."""


@dataclass
class KindResult:
    """What a successful attempt produced."""

    output: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Kind:
    """Base of a workflow kind. Subclasses set the class attributes and override the two methods.

    A kind module in this package defines exactly one subclass instance named `KIND`; the
    registry discovers it, so adding a kind is adding one module.
    """

    name: ClassVar[str] = ""
    queue: ClassVar[str] = "automation"
    """Dramatiq queue its runs go to: automation, email, sync, report or webhook."""
    admin_only: ClassVar[bool] = False
    """Only admins may create or edit workflows of this kind."""
    description: ClassVar[str] = ""
    payload_help: ClassVar[str] = ""
    """One line telling what the payload looks like, shown in errors and help."""

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Check and normalise a payload; raise InvalidError(field="payload.X") naming what is wrong."""
        return payload

    def execute(self, ctx: RunContext) -> KindResult:
        """Do the work of one attempt; raise ExecutionError(output=...) on failure."""
        raise NotImplementedError

    def secret_fields(self) -> tuple[str, ...]:
        """Payload keys whose values are secrets and are masked in every answer and log."""
        return ()
