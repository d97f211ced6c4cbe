"""Dispatcher: run rows become Dramatiq messages only after they are committed; batches the sends."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import structlog
from dramatiq import Message

from nexus_core.errors import NotFoundError
from nexus_core.services import runs as run_service
from nexus_core.store.models import FINAL_RUN_STATUSES
from nexus_daemon.executor import ACTOR_NAME

if TYPE_CHECKING:
    from nexus_daemon.broker import NexusRedisBroker
    from nexus_core.store.db import Store
    from nexus_daemon.live import RunChanges

log = structlog.get_logger("nexus.dispatcher")
_STOP = object()


def build_message(run_id: str, attempt: int, queue_name: str) -> Message[Any]:
    return Message(queue_name=queue_name, actor_name=ACTOR_NAME, args=(run_id, attempt), kwargs={}, options={},
                   message_id=run_service.message_id(run_id, attempt))


class Sender:
    """A thread that sends messages to the broker in batches, so many triggers cost few round trips."""

    def __init__(self, broker: "NexusRedisBroker"):
        self.broker = broker
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="nexus-sender", daemon=True)
        self._thread.start()

    def enqueue(self, run_id: str, attempt: int, queue_name: str, delay: float = 0.0) -> None:
        self._queue.put((build_message(run_id, attempt, queue_name), int(delay * 1000) or None))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            while len(batch) < 500:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._send(batch)
                    return
                batch.append(nxt)
            self._send(batch)

    def _send(self, batch: list[tuple[Message[Any], int | None]]) -> None:
        try:
            self.broker.enqueue_many(batch)
        except Exception as exc:  # noqa: BLE001 - the runs stay queued; the recovery sweep sends them again
            log.warning("could not send runs to Redis; they will be sent again by recovery",
                        count=len(batch), error=str(exc))

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)


class Dispatcher:
    """Manual triggers and re-runs, plus waiting for a run to finish."""

    def __init__(self, store: "Store", sender: Sender, loop: asyncio.AbstractEventLoop,
                 changes: "RunChanges | None" = None):
        self.store = store
        self.sender = sender
        self.loop = loop
        self.changes = changes
        self._waiters: dict[str, list[asyncio.Future[str]]] = defaultdict(list)

    async def trigger(self, org_id: str, name: str, actor: str, trigger: str = "manual",
                      approval: str | None = None) -> dict[str, Any]:
        """Run a workflow now; `approval` ("confirmed", "god mode") is needed when it requires approval."""
        return self._send(await self.store.awrite(run_service.trigger, org_id, name, actor, trigger, approval))

    async def rerun(self, org_id: str, run_id: str, actor: str, approval: str | None = None) -> dict[str, Any]:
        """A new manual run of a failed or dead run's workflow."""
        run = await self.store.awrite(run_service.rerun, org_id, run_id, actor, approval)
        return {**self._send(run), "rerun_of": run["rerun_of"]}

    def _send(self, run: dict[str, Any]) -> dict[str, Any]:
        self.sender.enqueue(run["id"], 1, run["queue"])
        if self.changes is not None:
            self.changes.note(run["organization_id"], run["workflow_name"], "created")
        return run_service.public(run)

    def finished(self, run_id: str, status: str) -> None:
        """Called from worker threads when a run reaches a final state."""
        if run_id in self._waiters:
            self.loop.call_soon_threadsafe(self._resolve, run_id, status)

    def _resolve(self, run_id: str, status: str) -> None:
        for fut in self._waiters.pop(run_id, []):
            if not fut.done():
                fut.set_result(status)

    async def wait(self, org_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        """Wait until the run is final (signalled by in-process workers, polled for remote ones)."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.store.aread(run_service.get_status, run_id)
            if status is None:
                raise NotFoundError(f"run {run_id} no longer exists")
            if status in FINAL_RUN_STATUSES:
                return await self.store.aread(run_service.get, org_id, run_id)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                run = await self.store.aread(run_service.get, org_id, run_id)
                run["wait_timed_out"] = True
                return run
            fut: asyncio.Future[str] = self.loop.create_future()
            self._waiters[run_id].append(fut)
            try:
                await asyncio.wait_for(asyncio.shield(fut), timeout=min(1.0, remaining))
            except asyncio.TimeoutError:
                pass
            finally:
                waiters = self._waiters.get(run_id)
                if waiters and fut in waiters:
                    waiters.remove(fut)
                    if not waiters:
                        self._waiters.pop(run_id, None)
