"""The `noop` kind: does nothing and succeeds, for trying out schedules, triggers and benchmarks."""

from __future__ import annotations

from typing import Any

from nexus_core.kinds.base import Kind, KindResult, RunContext


class NoopKind(Kind):
    """Accepts any JSON object as payload and succeeds at once without output."""

    name = "noop"
    queue = "automation"
    description = "Does nothing and succeeds; useful to test schedules, triggers and throughput."
    payload_help = "any JSON object (ignored), e.g. {}"

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    def execute(self, ctx: RunContext) -> KindResult:
        # Benchmarks measure the pipeline around the kind, so this must cost nothing.
        return KindResult(output="")


KIND = NoopKind()
