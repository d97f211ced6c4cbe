"""Dramatiq's Redis broker with push wake-ups instead of backoff polling, batched sends and presence checks."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterable
from uuid import uuid4

import dramatiq
import redis
from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.middleware import Middleware

QUEUES = ("automation", "email", "sync", "report", "webhook")

#: Longest single BLPOP: the consumer must come back at least this often so the fetch that follows
#: refreshes this process's heartbeat (every dispatch ZADDs it) and the ConsumerThread can see stop().
MAX_BLOCK_S = 1.0
#: Redis only checks blocked clients' timeouts every 1/hz s (100 ms by default), so shorter waits
#: (a delayed message that is nearly due) are slept locally to stay on time.
MIN_BLOCK_S = 0.15
#: Tokens only pile up in a wake list while no consumer is blocked on it (a blocked BLPOP takes the
#: pushed element at once).  A stored token covers the race "fetch found nothing, then a message
#: arrived before the BLPOP"; a few of them are enough to wake several idle processes after a
#: burst, and capping the list (LPUSH+LTRIM, one round trip with the enqueue) bounds both memory and
#: the number of spurious wake-ups (one cheap empty fetch each) after the queue drains.
MAX_WAKE_TOKENS = 8
#: Normal commands keep a socket timeout so a dead server is noticed; the blocking connection's
#: timeout must exceed the longest block (redis-py 8 defaults to 5 s).
SOCKET_TIMEOUT_S = 5.0


#: KEYS = [ack set, queue list, queue's message hash]: what dispatch.lua's maintenance does for one
#: dead worker's ack set, atomically: ids whose message still exists go back on the queue, the set goes.
REQUEUE_ACKS_LUA = """
local moved = 0
for _, id in ipairs(redis.call("smembers", KEYS[1])) do
    if redis.call("hexists", KEYS[3], id) == 1 then
        redis.call("rpush", KEYS[2], id)
        moved = moved + 1
    end
end
redis.call("del", KEYS[1])
return moved
"""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class NexusRedisBroker(RedisBroker):
    """A RedisBroker whose idle consumers block on a per-queue wake list instead of sleeping."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        #: queue -> Redis ids a closed consumer held but could not requeue (Redis was down).
        self.lost: dict[str, set[str]] = {}
        self._requeue_acks = self.client.register_script(REQUEUE_ACKS_LUA)

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _NexusConsumer

    def wake_key(self, queue_name: str) -> str:
        """The list idle consumers of `queue_name` (a queue or a delay queue) BLPOP on."""
        # Dramatiq queue names cannot contain ":", so this never collides with a queue's own keys.
        return f"{self.namespace}:wake:{queue_name}"

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Enqueue one message (delay in ms) and wake an idle consumer, in one round trip."""
        return self._send([(message, delay)])[0]

    def enqueue_many(self, items: list[tuple[Message[Any], int | None]]) -> None:
        """Enqueue many (message, delay ms or None) pairs in one pipelined round trip."""
        if items:
            self._send(items)

    def _send(self, items: Iterable[tuple[Message[Any], int | None]]) -> list[Message[Any]]:
        prepared = [self._prepare(message, delay) for message, delay in items]
        # The same hooks, in the same order per message, as RedisBroker.enqueue emits.
        for message, delay in prepared:
            self.emit_before("enqueue", message, delay)
        wakes: dict[str, int] = {}
        for message, _ in prepared:
            wakes[message.queue_name] = wakes.get(message.queue_name, 0) + 1
        script = self.scripts["dispatch"]
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            for message, _ in prepared:
                args = self._dispatch_args("enqueue", message.queue_name,
                                           message.options["redis_message_id"], message.encode())
                # Raw EVALSHA: passing the Script object would make redis-py add a SCRIPT EXISTS round trip.
                pipe.evalsha(script.sha, 1, self.namespace, *args)
            for queue_name, count in wakes.items():
                # The wake-up goes after the enqueue, so a woken consumer's fetch finds the message.
                key = self.wake_key(queue_name)
                pipe.lpush(key, *["1"] * min(count, MAX_WAKE_TOKENS))
                pipe.ltrim(key, 0, MAX_WAKE_TOKENS - 1)
            try:
                pipe.execute()
                break
            except redis.exceptions.NoScriptError:
                # The server lost its script cache (restarted), so none of the EVALSHAs ran and
                # sending the whole pipeline again cannot enqueue a message twice.
                if attempt == 2:
                    raise
                script.sha = self.client.script_load(script.script)
        for message, delay in prepared:
            self.emit_after("enqueue", message, delay)
        return [message for message, _ in prepared]

    def _prepare(self, message: Message[Any], delay: int | None) -> tuple[Message[Any], int | None]:
        # As RedisBroker.enqueue, except that the Redis-side id starts with our message id so
        # message_ids_present can read it off the hash field; the random suffix keeps it unique
        # per enqueue, which acks need (a retry's copy may be enqueued before the original is acked).
        message = message.copy(options={"redis_message_id": f"{message.message_id}/{uuid4().hex}"})
        if delay is not None:
            message = message.copy(queue_name=dq_name(message.queue_name),
                                   options={"eta": current_millis() + delay})
        self.logger.debug("Enqueueing message %r on queue %r.", message.message_id, message.queue_name)
        return message, delay

    def _dispatch_args(self, command: str, queue_name: str, *args: Any) -> list[Any]:
        # The argument list RedisBroker._dispatch builds for dispatch.lua.
        return [command, current_millis(), queue_name, self.broker_id, self.heartbeat_timeout,
                self.dead_message_ttl, self._should_do_maintenance(command), self._max_unpack_size(), *args]

    def wake(self, queue_name: str) -> None:
        """Push one wake-up token for `queue_name` (after messages reach it other than by enqueue)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.lpush(self.wake_key(queue_name), "1")
        pipe.ltrim(self.wake_key(queue_name), 0, MAX_WAKE_TOKENS - 1)
        pipe.execute()

    def message_ids_present(self, queue_name: str, message_ids: list[str]) -> set[str]:
        """Which of these message ids Redis still holds for this queue: waiting, delayed or unacked."""
        wanted, found = set(message_ids), set()
        if not wanted:
            return found
        # A message lives in "<queue>.msgs" from enqueue until ack, whether it waits in the list or
        # sits in some worker's ack set.  The delay queue is scanned first: a due message is
        # enqueued on the queue before it is acked off the delay queue, so it cannot slip past.
        for name in (dq_name(queue_name), queue_name):
            for field, data in self.client.hscan_iter(f"{self.namespace}:{name}.msgs", count=1000):
                prefix, sep, _ = (field if isinstance(field, str) else field.decode()).rpartition("/")
                # Fields without our "<message_id>/<hex>" shape were enqueued by a stock RedisBroker.
                try:
                    message_id = prefix if sep else Message.decode(data).message_id
                except DecodeError:
                    continue  # not a Dramatiq message: nothing we could have sent
                if message_id in wanted:
                    found.add(message_id)
        return found

    def ack_holders(self) -> dict[str, list[str]]:
        """Broker id -> the declared queues (and delay queues) in whose ack sets it holds fetched, unacked messages."""
        prefix = f"{self.namespace}:__acks__."
        names = sorted(self.queues | self.delay_queues, key=len, reverse=True)
        found: dict[str, list[str]] = {}
        for key in self.client.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
            rest = (key if isinstance(key, str) else key.decode())[len(prefix):]
            # "<broker id>.<queue>": a broker id (a host name) may hold dots, a queue name is one we declared.
            for name in names:
                if rest.endswith("." + name):
                    found.setdefault(rest[:-len(name) - 1], []).append(name)
                    break
        return found

    def requeue_abandoned(self, broker_ids: Iterable[str]) -> int:
        """Put the messages dead brokers fetched but never acked back on their queues; returns how many.

        Dramatiq does this itself only once a broker's heartbeat is older than heartbeat_timeout (60 s)
        and then only on a random ~0.1% of commands, so a message a killed process had prefetched
        (or held on a delay queue) would wait minutes.  The caller must know these brokers are gone;
        a copy handed out while its holder still runs it is harmless, as the run's claim is guarded."""
        holders, moved, woken = self.ack_holders(), 0, set()
        for broker_id in set(broker_ids):
            for name in holders.get(broker_id, []):
                count = int(self._requeue_acks(keys=[f"{self.namespace}:__acks__.{broker_id}.{name}",
                                                     f"{self.namespace}:{name}", f"{self.namespace}:{name}.msgs"]))
                if count:
                    moved += count
                    woken.add(name)
        for name in woken:
            self.wake(name)
        return moved

    def queue_depths(self) -> dict[str, dict[str, int]]:
        """Per declared queue: messages waiting, fetched but not yet acked, and delayed."""
        names = sorted(self.queues)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.llen(f"{self.namespace}:{name}")
            pipe.hlen(f"{self.namespace}:{name}.msgs")
            pipe.hlen(f"{self.namespace}:{dq_name(name)}.msgs")
        res = pipe.execute()
        return {name: {"ready": res[i * 3], "unacked": max(0, res[i * 3 + 1] - res[i * 3]),
                       "delayed": res[i * 3 + 2]} for i, name in enumerate(names)}

    def close(self) -> None:
        """Close the command connections (each consumer closes its own blocking one)."""
        self.client.close()
        self.client.connection_pool.disconnect()  # a pool passed in is not closed by close()


class _NexusConsumer(_RedisConsumer):
    """A consumer that waits on a wake list (idle) or on its own acks (full) instead of polling."""

    def __init__(self, broker: NexusRedisBroker, queue_name: str, prefetch: int, timeout: int):
        super().__init__(broker, queue_name, prefetch, timeout)
        self.wake_key = broker.wake_key(queue_name)
        self.room = threading.Event()  # set by ack/nack: a prefetch slot came free
        self.etas: dict[str, int] = {}  # delay queues: redis id -> eta of each message held in memory
        self.blocking: redis.Redis | None = None

    def _blocking_client(self) -> redis.Redis:
        if self.blocking is None:
            pool = self.broker.client.connection_pool
            kwargs = {**pool.connection_kwargs, "socket_timeout": MAX_BLOCK_S + SOCKET_TIMEOUT_S}
            # One connection of its own: a BLPOP must not hold one of the pool's connections that
            # worker threads need for acks, nor run into the pool's short socket timeout.
            self.blocking = redis.Redis.from_pool(
                redis.ConnectionPool(connection_class=pool.connection_class, max_connections=1, **kwargs))
        return self.blocking

    def ack(self, message: MessageProxy) -> None:
        try:
            super().ack(message)
        finally:
            self.etas.pop(message.options.get("redis_message_id"), None)
            self.room.set()

    def nack(self, message: MessageProxy) -> None:
        try:
            super().nack(message)
        finally:
            self.etas.pop(message.options.get("redis_message_id"), None)
            self.room.set()

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
            # Acks go out synchronously from the worker threads in Dramatiq 2.2 (nothing is queued
            # in this consumer), so there is nothing to flush before waiting.
            self.room.clear()  # cleared before counting, so an ack racing with the count is not lost
            room = self.prefetch - self.outstanding_message_count
            if room <= 0:
                # Full: new messages could not be taken anyway; wait for a slot, not for Redis.
                self.room.wait(self._wait_budget())
                return None
            self.message_cache = self.broker.do_fetch(self.queue_name, room)
            if not self.message_cache:
                wait = self._wait_budget()
                if wait < MIN_BLOCK_S:
                    time.sleep(wait)
                else:
                    self._blocking_client().blpop([self.wake_key], timeout=wait)
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
        if self.blocking is not None:
            self.blocking.close()
            self.blocking = None


def make_broker(url: str, *, namespace: str = "nexus", queues: tuple[str, ...] = QUEUES,
                middleware: list[Middleware] | None = None, set_global: bool = True,
                broker_id: str | None = None) -> NexusRedisBroker:
    """Build the broker for a redis:// or unix:// URL with the given queues declared."""
    pool = redis.ConnectionPool.from_url(url, socket_timeout=SOCKET_TIMEOUT_S,
                                         socket_connect_timeout=SOCKET_TIMEOUT_S)
    # middleware=None would make Dramatiq install its defaults (Retries, TimeLimit, AgeLimit,
    # Callbacks, Pipelines, ShutdownNotifications); the Worker needs none of them (it adds its
    # own internal middleware on start) and we do retries ourselves, so the default is none.
    broker = NexusRedisBroker(client=redis.Redis.from_pool(pool), namespace=namespace,
                              middleware=list(middleware or []))
    if broker_id:
        # The daemon passes its worker id, so recovery can tell from the workers table whose ack sets
        # belong to a process that is gone (Dramatiq's default is a random uuid nobody can check).
        broker.broker_id = broker_id
    for queue_name in queues:
        broker.declare_queue(queue_name)
    if set_global:
        # Anything that falls back to dramatiq.get_broker() (a bare @dramatiq.actor, pipelines,
        # groups) would otherwise silently build a stock broker on localhost:6379 with the defaults.
        dramatiq.set_broker(broker)
    return broker
