"""Live pushes to subscribed connections: coalesced `runs.changed`, and one-off topic notifications.

Runs change thousands of times a second under load, from worker threads, the scheduler and RPC
handlers. Each change only bumps counters in an in-memory accumulator behind a lock (no statement,
no I/O); the first change after a flush asks the event loop, once, to flush within FLUSH_SECONDS,
so an idle daemon has no timer at all and a busy one pushes at most once per FLUSH_SECONDS.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from nexus_core.rpc import protocol as P

FLUSH_SECONDS = 0.25
#: At most this many workflow names per push (what one `workflows.list` call accepts); the rest are counted.
MAX_NAMES = 10_000
FINISHED = ("succeeded", "failed", "dead", "skipped")


def push(connections: Any, org_id: str, topic: str, method: str, params: dict[str, Any]) -> None:
    """Send one notification to the connections of an organization that subscribed to `topic` (loop thread)."""
    message = P.notification(method, params)
    for conn in list(connections):
        if topic in conn.subscriptions and conn.org_id == org_id:
            conn.send(message)


class _Pending:
    __slots__ = ("workflows", "created", "started", "retrying", "finished")

    def __init__(self) -> None:
        self.workflows: set[str] = set()
        self.created = self.started = self.retrying = 0
        self.finished = dict.fromkeys(FINISHED, 0)

    def params(self) -> dict[str, Any]:
        names = sorted(self.workflows)
        out: dict[str, Any] = {"workflows": names[:MAX_NAMES], "started": self.started, "finished": self.finished,
                               "created": self.created, "retrying": self.retrying}
        if len(names) > MAX_NAMES:
            out["more_workflows"] = len(names) - MAX_NAMES
        return out


class RunChanges:
    """The accumulator behind `runs.changed`: `note()` from any thread, flushed on the event loop."""

    def __init__(self, connections: Any):
        self.connections = connections
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._armed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_flush = 0.0

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start flushing on `loop` (changes noted before this are flushed now)."""
        with self._lock:
            self._loop = loop
            arm = bool(self._pending) and not self._armed
            self._armed = self._armed or arm
        if arm:
            loop.call_soon_threadsafe(self._arm)

    def detach(self) -> None:
        with self._lock:
            self._loop = None

    def note(self, org_id: str, workflow: str, event: str, count: int = 1) -> None:
        """Count one change: `created`, `started`, `retrying`, or a final status (succeeded, failed, dead, skipped)."""
        with self._lock:
            pending = self._pending.get(org_id)
            if pending is None:
                pending = self._pending[org_id] = _Pending()
            pending.workflows.add(workflow)
            if event == "created":
                pending.created += count
            elif event == "started":
                pending.started += count
            elif event == "retrying":
                pending.retrying += count
            elif event in pending.finished:
                pending.finished[event] += count
            if self._armed or self._loop is None:
                return
            self._armed = True
            loop = self._loop
        try:
            loop.call_soon_threadsafe(self._arm)
        except RuntimeError:  # the loop closed while the daemon stops
            pass

    def _arm(self) -> None:
        if self._loop is None:  # detached: the daemon is stopping, nobody is left to tell
            return
        delay = max(0.0, self._last_flush + FLUSH_SECONDS - self._loop.time())
        self._loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """Push what accumulated, one `runs.changed` per organization (loop thread)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._armed = False
        if self._loop is not None:
            self._last_flush = self._loop.time()
        for org_id, changes in pending.items():
            push(self.connections, org_id, "runs", "runs.changed", changes.params())
