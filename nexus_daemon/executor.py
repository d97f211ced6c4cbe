"""The Dramatiq actor that runs one attempt: claim it in the store, execute its kind, record the outcome."""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq
import structlog

from nexus_core.errors import ExecutionError, InvalidError, NexusError
from nexus_core.kinds import RunContext, get_kind
from nexus_core.kinds.base import tail
from nexus_core.services import runs as run_service
from nexus_core.store.db import Store
from nexus_daemon import consumer

log = structlog.get_logger("nexus.worker")
ACTOR_NAME = "nexus_run"

Enqueue = Callable[[str, int, str, float], None]
"""enqueue(run_id, attempt, queue, delay_seconds)"""


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{int(time.time())}"


class Executor:
    """Runs attempts for whoever consumes the queues: the daemon, or `nexus worker` on another host."""

    def __init__(self, store: Store, enqueue: Enqueue, worker_id: str, *,
                 on_finished: Callable[[str, str], None] | None = None,
                 on_change: Callable[[str, str, str], None] | None = None, metrics: Any = None):
        self.store = store
        self.enqueue = enqueue
        self.worker_id = worker_id
        self.on_finished = on_finished
        self.on_change = on_change
        """on_change(organization, workflow name, "started" | "retrying" | final status): in memory, cheap."""
        self.metrics = metrics
        self._finished_queue: queue.SimpleQueue[Any] | None = None
        self._lock = threading.Lock()

    def register(self, broker: dramatiq.Broker) -> dramatiq.Actor[..., None]:
        # One actor for every queue: the message's queue decides where it runs, the run row what it does.
        return dramatiq.Actor(self.run, broker=broker, actor_name=ACTOR_NAME, queue_name="automation",
                              priority=0, options={})

    def run(self, run_id: str, attempt: int) -> None:
        """Execute one attempt and record its outcome; the message is acknowledged once the outcome is written.

        On a Nexus worker thread the outcome is handed to the writer and this returns at once: the ack,
        the retry and the listeners follow on the finisher thread after the commit.  Elsewhere the
        write is waited for here and Dramatiq acknowledges the message when this returns."""
        try:
            claimed = self.store.write_urgent(run_service.claim, run_id, attempt, self.worker_id)
        except NexusError as exc:
            # The store is down.  Raising makes Dramatiq reject the message (off to its dead-letter
            # set); the run is still `queued` in the store, so the recovery sweep sends it again.
            log.warning("could not claim run; recovery will send it again", run_id=run_id, error=exc.message)
            raise
        if claimed is None:
            return  # already done, or owned by another delivery of the same attempt
        run, wf = claimed["run"], claimed["workflow"]
        if self.on_change:
            self.on_change(run["organization_id"], run["workflow_name"], "started")
        bound = log.bind(run_id=run_id, workflow=run["workflow_name"], attempt=attempt)
        ok, output, error, retryable = False, "", None, True
        started = time.perf_counter()
        if self.metrics:
            self.metrics.observe("run.start_delay", max(0.0, (claimed["started_at"] - run["created_at"]).total_seconds()))
        try:
            if wf is None:
                raise ExecutionError("the workflow was deleted before this run started", retryable=False)
            kind = get_kind(wf["kind"])
            ctx = RunContext(run_id=run_id, workflow_id=wf["id"], workflow_name=wf["name"],
                             organization_id=run["organization_id"], attempt=attempt, trigger=run["trigger"],
                             payload=dict(wf["payload"] or {}), timeout=float(wf["timeout"]))
            result = kind.execute(ctx)
            ok, output = True, tail(result.output or "")
        except ExecutionError as exc:
            error, output, retryable = exc.message, tail(exc.output or ""), exc.retryable
        except InvalidError as exc:
            error, retryable = f"invalid definition: {exc.message}", False
        except Exception as exc:  # noqa: BLE001 - a kind's bug fails the attempt, not the worker
            bound.exception("kind raised unexpectedly")
            error = f"{type(exc).__name__}: {exc}"
        finish = {"ok": ok, "started_at": claimed["started_at"], "output": output, "error": error,
                  "retryable": retryable, "backoff": float(wf["backoff"]) if wf else 1.0}
        if consumer.defers_acks():
            # The outcome is written while this thread takes its next message; the message is
            # acknowledged once it is (so 16 threads keep 16 runs going, not 8 plus 8 waiting to be written).
            after = consumer.AckAfter()
            written = _Written(self._finisher(), after, run, ok, error, started, claimed["started_at"], bound)
            self.store.write_urgent_later(written, run_service.finish, run, **finish)
            consumer.defer_ack(after)
            return
        outcome = self.store.write_urgent(run_service.finish, run, **finish)
        self._finished(run, outcome, ok, error, started, claimed["started_at"], bound)

    def _finisher(self) -> queue.SimpleQueue[Any]:
        if self._finished_queue is None:
            with self._lock:
                if self._finished_queue is None:
                    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
                    threading.Thread(target=self._finish_loop, args=(q,), name="nexus-finisher", daemon=True).start()
                    self._finished_queue = q
        return self._finished_queue

    def _finish_loop(self, q: queue.SimpleQueue[Any]) -> None:
        while True:
            written, outcome, exc = q.get()  # idle: blocked here, no CPU
            run, bound = written.run, written.bound
            try:
                if exc is not None:
                    # The store is down: the message is rejected, as when a write waited for in the worker
                    # thread fails.  The run stays `running` under this worker until recovery finds the
                    # worker gone (the next start) and retries it.
                    bound.warning("could not record the run's outcome; it stays running until the daemon restarts",
                                  error=getattr(exc, "message", str(exc)))
                    written.after.done(False)
                    continue
                try:
                    self._finished(run, outcome, written.ok, written.error, written.started,
                                   written.started_at, bound)
                finally:
                    written.after.done(True)
            except Exception:  # noqa: BLE001 - one outcome's listener must not stop the others
                bound.exception("handling a written outcome failed")

    def _finished(self, run: dict[str, Any], outcome: dict[str, Any], ok: bool, error: str | None, started: float,
                  started_at: Any, bound: Any) -> None:
        """What follows a written outcome: counters, live changes, the retry or the released fire."""
        if self.metrics:
            self.metrics.observe("run.duration", time.perf_counter() - started)
            self.metrics.incr(f"runs.{outcome['status']}")
        if self.on_change and outcome["status"] != "stale":
            self.on_change(run["organization_id"], run["workflow_name"], outcome["status"])
        if outcome["status"] == "retrying":
            delay = max(0.0, (outcome["due"] - started_at).total_seconds() - (time.perf_counter() - started))
            self.enqueue(run["id"], outcome["attempt"], run["queue"], delay)
            bound.info("attempt failed, retrying", error=error, delay_s=round(delay, 3))
        elif not ok:
            bound.warning("run failed", status=outcome["status"], error=error)
        if outcome.get("released"):  # a fire held behind this run (overlap policy queue, fires made together) may go
            released_id, released_queue = outcome["released"]
            self.enqueue(released_id, 1, released_queue, 0.0)
        if self.on_finished and outcome["status"] != "retrying":
            self.on_finished(run["id"], outcome["status"])


class _Written:
    """Where the writer hands a deferred outcome: straight on to the executor's finisher thread."""

    __slots__ = ("after", "bound", "error", "ok", "queue", "run", "started", "started_at")

    def __init__(self, q: queue.SimpleQueue[Any], after: consumer.AckAfter, run: dict[str, Any], ok: bool,
                 error: str | None, started: float, started_at: Any, bound: Any):
        self.queue, self.after, self.run, self.ok, self.error = q, after, run, ok, error
        self.started, self.started_at, self.bound = started, started_at, bound

    def set_result(self, outcome: dict[str, Any]) -> None:
        self.queue.put((self, outcome, None))

    def set_exception(self, exc: BaseException) -> None:
        self.queue.put((self, None, exc))
