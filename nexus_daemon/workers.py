"""Dramatiq's Worker with threads that sleep while idle: woken by work or by stop(), not by a poll timer.

Stock Dramatiq wakes every worker thread and every consumer once per worker_timeout (1 s) to check
whether it should stop: 26 threads and 10 Redis fetches a second in an idle daemon, most of its idle
CPU and the embedded redis-server's.  Here the timeout is long (IDLE_TIMEOUT_MS), and stop() wakes
the idle threads itself: a no-op item on the work queue for each worker thread, a token on its own
wake list for each consumer.  The broker's heartbeat, which Dramatiq refreshes with every fetch, is
refreshed by the daemon's housekeeping instead (see NexusRedisBroker.heartbeat).
"""

from __future__ import annotations

import sys
from queue import Empty
from typing import Any

import dramatiq
from dramatiq.common import iter_queue, join_all
from dramatiq.worker import QUEUE_PREFETCH, WorkerThread, _WorkQueueItem

from nexus_daemon.consumer import NexusConsumer, allow_deferred_acks

#: Messages a consumer holds per worker thread: running, waiting in memory, or waiting for their ack.
PREFETCH_PER_THREAD = 4
#: How long an idle worker thread or consumer blocks before it looks around anyway.
IDLE_TIMEOUT_MS = 30_000
_LAST = sys.maxsize  # a wake-up item sorts after every message


class _WorkerThread(WorkerThread):
    """Dramatiq's worker thread, except that an item without a message only makes it look at `running`."""

    def run(self) -> None:
        self.running = True
        if issubclass(getattr(self.broker, "consumer_class", object), NexusConsumer):
            allow_deferred_acks()  # an actor may leave its message's ack until its outcome is written
        self.broker.emit_after("worker_thread_boot", self)
        while self.running:
            try:
                item = self.work_queue.get(timeout=self.timeout)
            except Empty:
                continue
            if item.message is None:
                self.work_queue.task_done()
                continue
            self.process_message(item.message)
        self.broker.emit_before("worker_thread_shutdown", self)


class NexusWorker(dramatiq.Worker):
    """A Worker whose idle threads cost nothing until there is work, and that still stops at once."""

    def __init__(self, broker: Any, **kwargs: Any):
        kwargs.setdefault("worker_timeout", IDLE_TIMEOUT_MS)
        super().__init__(broker, **kwargs)
        if not QUEUE_PREFETCH:
            # Dramatiq holds two messages per thread.  A message whose outcome is still being written
            # (its ack deferred) counts until it is acked, so the threads would run dry behind a busy
            # writer: room for two more per thread.
            self.queue_prefetch = min(self.worker_threads * PREFETCH_PER_THREAD, 65535)

    def _add_worker(self) -> None:
        thread = _WorkerThread(broker=self.broker, consumers=self.consumers, work_queue=self.work_queue,
                               worker_timeout=self.worker_timeout)
        thread.start()
        self.workers.append(thread)

    def stop(self, timeout: int = 600_000) -> None:
        # Workers first, as Dramatiq does: they finish what they are running.  Idle ones are woken.
        for thread in self.workers:
            thread.stop()
        for _ in self.workers:
            self.work_queue.put(_WorkQueueItem(_LAST, None))  # type: ignore[arg-type]
        join_all(self.workers, timeout)
        # Wake-ups nobody took must not reach Dramatiq's requeue of the messages left in memory.
        left = [item for item in iter_queue(self.work_queue) if item.message is not None]
        for item in left:
            self.work_queue.put(item)
        for thread in self.consumers.values():
            thread.stop()
        self.broker.wake_consumers(list(self.consumers))
        super().stop(timeout)  # the workers are joined already: joins the consumers, requeues, closes
