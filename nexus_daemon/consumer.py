"""The Redis consumer behind the Dramatiq workers: push wake-ups instead of polling, batched fetches and acks.

Stock Dramatiq costs one Redis round trip per message fetched and one per message acknowledged, both
paid by the threads that should be running jobs.  Here a consumer refills its prefetch buffer only
when it has drained to half (one fetch brings many messages), and one acker thread per process sends
the acks of every worker thread, all that came within ACK_LINGER_S, in one round trip.
A worker still acknowledges a message only after its outcome is written; the ack reaches Redis a
round trip later, and a message whose ack was lost with a killed process is handed out again and
changes nothing (its run's claim fails).  The outcome need not be written while the worker thread
waits: an actor on a Nexus worker thread may hand its message an `AckAfter` (`defer_ack`), and the
message is acknowledged when that reports the outcome written, while the thread takes the next one.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

import redis
import structlog
from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed

if TYPE_CHECKING:
    from nexus_daemon.broker import NexusRedisBroker

log = structlog.get_logger("nexus.broker")

#: Longest single BLPOP of an idle consumer.  Nothing needs it back sooner: the daemon's housekeeping
#: refreshes the broker's heartbeat (Dramatiq relies on fetches for that), and stop() wakes it through
#: its own wake list.
MAX_BLOCK_S = 30.0
#: Redis only checks blocked clients' timeouts every 1/hz s (100 ms by default), so shorter waits
#: (a delayed message that is nearly due) are slept locally to stay on time.
MIN_BLOCK_S = 0.15
#: Normal commands keep a socket timeout so a dead server is noticed; the blocking connection's
#: timeout must exceed the longest block (redis-py 8 defaults to 5 s).
SOCKET_TIMEOUT_S = 5.0
#: How long the acker lets acks gather after the first one (an ack is already late by a round trip).
ACK_LINGER_S = 0.01
#: How long the acker waits before trying again after Redis refused a batch of acks.
ACK_RETRY_S = 1.0
#: How long a closing consumer waits for the outcomes its messages' acks are waiting for.
OUTCOME_WAIT_S = 30.0
_STOP = object()
_RETRY = object()  # a wake-up that carries no ack: try the batch that failed again
_thread = threading.local()


class AckAfter:
    """An actor's word that its message may be acknowledged later: once `done(ok)` is called.

    `ok` False means the outcome could not be written: the message is rejected instead (as when the
    actor raises), and recovery sends the run again."""

    __slots__ = ("_lock", "_ok", "_then")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ok: bool | None = None
        self._then: Callable[[bool], None] | None = None

    def then(self, fn: Callable[[bool], None]) -> None:
        with self._lock:
            ok = self._ok
            if ok is None:
                self._then = fn
                return
        fn(ok)  # already done

    def done(self, ok: bool) -> None:
        with self._lock:
            if self._ok is not None:
                return
            self._ok = ok
            fn, self._then = self._then, None
        if fn is not None:
            fn(ok)


def allow_deferred_acks() -> None:
    """Called by each Nexus worker thread: its consumer honours `defer_ack`."""
    _thread.defers = True


def defers_acks() -> bool:
    """Whether the message being processed on this thread may be acknowledged later (see AckAfter)."""
    return getattr(_thread, "defers", False)


def defer_ack(after: AckAfter) -> None:
    """From inside an actor: acknowledge the message being processed when `after` is done, not on return."""
    _thread.after = after


def _take_deferred() -> AckAfter | None:
    after = getattr(_thread, "after", None)
    if after is not None:
        _thread.after = None
    return after


class Acker:
    """One thread that sends the acks of every consumer of a broker, many per round trip."""

    def __init__(self, broker: "NexusRedisBroker"):
        self.broker = broker
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ack(self, queue_name: str, redis_id: str) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="nexus-acker", daemon=True)
                    self._thread.start()
        self._queue.put((queue_name, redis_id))

    def flush(self, timeout: float = SOCKET_TIMEOUT_S) -> bool:
        """Wait until every ack handed in so far has reached Redis (False: it did not within `timeout`)."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=SOCKET_TIMEOUT_S)
            self._thread = None

    def _loop(self) -> None:
        pending: dict[str, list[str]] = {}
        waiters: list[threading.Event] = []
        stopping = False
        while not stopping:
            item = self._queue.get()  # idle: blocked here, no CPU
            if not isinstance(item, threading.Event) and item is not _STOP:
                # An ack waits a little for the ones right behind it: under load that is one round trip
                # for dozens instead of for two or three.  Runs do not wait for acks, and a flush
                # (the consumer closing) is not held back.
                time.sleep(ACK_LINGER_S)
            while True:
                if item is _STOP:
                    stopping = True
                elif item is _RETRY:
                    pass
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    pending.setdefault(item[0], []).append(item[1])
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if pending:
                try:
                    self.broker.ack_many(pending)
                    pending = {}
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    # Kept and sent with the next batch; a process killed meanwhile leaves them in its
                    # ack sets, from where recovery hands them out again.
                    log.warning("could not send acks to Redis; retrying", count=sum(map(len, pending.values())),
                                error=str(exc))
                    if not stopping:
                        time.sleep(ACK_RETRY_S)
                        self._queue.put(_RETRY)
                    continue
            for done in waiters:
                done.set()
            waiters = []


class NexusConsumer(_RedisConsumer):
    """A consumer that waits on a wake list (idle) or for room in its buffer (busy) instead of polling."""

    def __init__(self, broker: "NexusRedisBroker", queue_name: str, prefetch: int, timeout: int):
        super().__init__(broker, queue_name, prefetch, timeout)
        self.wake_key = broker.wake_key(queue_name)
        self.own_wake_key = broker.own_wake_key(queue_name)  # only this process pushes there: to stop it
        # Refill when at most this many fetched messages are still unfinished: one fetch then brings many.
        self.low_water = prefetch // 2
        self.room = threading.Event()  # set by ack/nack once the buffer is down to low_water
        self.etas: dict[str, int] = {}  # delay queues: redis id -> eta of each message held in memory
        self.blocking: redis.Redis | None = None
        self.deferred = 0  # messages whose ack waits for their outcome to be written
        self._deferred_done = threading.Condition()

    def _blocking_client(self) -> redis.Redis:
        if self.blocking is None:
            pool = self.broker.client.connection_pool
            kwargs = {**pool.connection_kwargs, "socket_timeout": MAX_BLOCK_S + SOCKET_TIMEOUT_S}
            # One connection of its own: a BLPOP must not hold one of the pool's connections that
            # the acker and the sender need, nor run into the pool's short socket timeout.
            self.blocking = redis.Redis.from_pool(
                redis.ConnectionPool(connection_class=pool.connection_class, max_connections=1, **kwargs))
        return self.blocking

    def _done(self, message: MessageProxy) -> None:
        self.queued_message_ids.discard(message.message_id)
        self.etas.pop(message.options.get("redis_message_id"), None)
        if self.outstanding_message_count <= self.low_water:
            self.room.set()

    def ack(self, message: MessageProxy) -> None:
        # Called by a worker thread when the actor returned: the run's outcome is written, or the
        # actor deferred the ack until it is.  The acker sends it.
        after = _take_deferred()
        if after is None:
            self._ack_now(message)
            return
        with self._deferred_done:
            self.deferred += 1
        after.then(lambda ok: self._outcome_written(message, ok))

    def _ack_now(self, message: MessageProxy) -> None:
        self.broker.acker.ack(self.queue_name, message.options["redis_message_id"])
        self._done(message)

    def _outcome_written(self, message: MessageProxy, ok: bool) -> None:
        try:
            if ok:
                self._ack_now(message)
            else:
                self.nack(message)
        except Exception as exc:  # noqa: BLE001 - left in Redis's ack set, recovery hands it out again
            log.warning("could not settle a message after its outcome", message_id=message.message_id,
                        error=str(exc))
        finally:
            with self._deferred_done:
                self.deferred -= 1
                if not self.deferred:
                    self._deferred_done.notify_all()

    def nack(self, message: MessageProxy) -> None:
        _take_deferred()  # the actor failed after deferring: rejected now, whatever its outcome write does
        try:
            super().nack(message)
        finally:
            self._done(message)

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        messages = list(messages)
        super().requeue(messages)
        for message in messages:
            self.etas.pop(message.options.get("redis_message_id"), None)
        if messages:
            # They are back on the list without an enqueue: wake another process's idle consumer.
            self.broker.wake(self.queue_name)

    def _requeue_ids(self, redis_ids: set[str]) -> None:
        self.broker.do_requeue(self.queue_name, *redis_ids)
        self.broker.wake(self.queue_name)

    def __next__(self) -> MessageProxy | None:
        try:
            lost = self.broker.lost.get(self.queue_name)
            if lost:
                self._requeue_ids(lost)
                self.broker.lost.pop(self.queue_name, None)
            while self.message_cache:
                data = self.message_cache.pop(0)
                if data is None:  # see RedisConsumer: a fetched id whose data is gone
                    continue
                message = Message.decode(data)
                self.queued_message_ids.add(message.message_id)
                if isinstance(message.options.get("eta"), (int, float)):
                    self.etas[message.options["redis_message_id"]] = message.options["eta"]
                return MessageProxy(message)
            self.room.clear()  # cleared before counting, so an ack racing with the count is not lost
            if self.outstanding_message_count > self.low_water:
                # Enough in hand: wait until the workers have drained it to half, not for Redis.
                self.room.wait(self._wait_budget())
                return None
            self.message_cache = self.broker.do_fetch(self.queue_name, self.prefetch - self.outstanding_message_count)
            if not self.message_cache:
                wait = self._wait_budget()
                if wait < MIN_BLOCK_S:
                    time.sleep(wait)
                else:
                    self._blocking_client().blpop([self.wake_key, self.own_wake_key], timeout=wait)
            # Returning None lets the ConsumerThread move due delayed messages and notice stop().
            return None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ConnectionClosed(exc) from None

    def _wait_budget(self) -> float:
        wait = min(self.timeout / 1000, MAX_BLOCK_S)
        etas = list(self.etas.values())
        if etas:  # a delay queue's consumer also wakes when its earliest held message is due
            wait = max(0.0, min(wait, (min(etas) - current_millis()) / 1000))
        return wait

    def close(self) -> None:
        # The worker threads are stopped: no ack is deferred any more, the ones deferred wait for the
        # writer, which outlives the consumers.
        with self._deferred_done:
            if not self._deferred_done.wait_for(lambda: not self.deferred, OUTCOME_WAIT_S):
                log.warning("outcomes not written before the consumer closed; recovery will redeliver their messages",
                            count=self.deferred)
        if not self.broker.acker.flush():
            log.warning("acks not confirmed by Redis before the consumer closed; recovery will redeliver them")
        # Held messages nobody acked or requeued: on a connection error the ConsumerThread drops its
        # in-memory delay queue, and on stop() the prefetched cache is dropped.  Redis still files
        # them as fetched by this live process, so maintenance would never hand them out again.
        held = set(self.etas) | {Message.decode(d).options["redis_message_id"] for d in self.message_cache if d}
        self.etas, self.message_cache = {}, []
        if held:
            try:
                self._requeue_ids(held)
            except (redis.ConnectionError, redis.TimeoutError):
                self.broker.lost.setdefault(self.queue_name, set()).update(held)  # the next consumer retries
        try:
            self.broker.client.delete(self.own_wake_key)
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # a leftover token only makes the next consumer of this process look once more
        if self.blocking is not None:
            self.blocking.close()
            self.blocking = None
