"""Dramatiq's Redis broker with push wake-ups instead of backoff polling, batched sends and acks, presence checks."""

from __future__ import annotations

import json
from typing import Any, Iterable
from uuid import uuid4

import dramatiq
import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import DecodeError
from dramatiq.middleware import Middleware

from nexus_daemon.consumer import SOCKET_TIMEOUT_S, Acker, NexusConsumer

QUEUES = ("automation", "email", "sync", "report", "webhook")

#: Tokens only pile up in a wake list while no consumer is blocked on it (a blocked BLPOP takes the
#: pushed element at once).  A stored token covers the race "fetch found nothing, then a message
#: arrived before the BLPOP"; a few of them are enough to wake several idle processes after a
#: burst, and capping the list (LPUSH+LTRIM, one round trip with the enqueue) bounds both memory and
#: the number of spurious wake-ups (one cheap empty fetch each) after the queue drains.
MAX_WAKE_TOKENS = 8

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


#: KEYS = [namespace]; ARGV = [now ms, broker id, max wake tokens, JSON list of [queue, redis id, data]]:
#: dispatch.lua's "enqueue" (and its heartbeat) for many messages in one command, then the wake-ups,
#: after the messages so that a woken consumer's fetch finds them.  The messages travel as one JSON
#: argument: redis-py spends more packing three arguments per message than everything else costs.
ENQUEUE_MANY_LUA = """
local ns = KEYS[1]
redis.call("zadd", ns .. ":__heartbeats__", ARGV[1], ARGV[2])
local counts = {}
for _, m in ipairs(cjson.decode(ARGV[4])) do
    local queue = ns .. ":" .. m[1]
    redis.call("hset", queue .. ".msgs", m[2], m[3])
    redis.call("rpush", queue, m[2])
    counts[m[1]] = (counts[m[1]] or 0) + 1
end
local cap = tonumber(ARGV[3])
for name, count in pairs(counts) do
    local key = ns .. ":wake:" .. name
    for _ = 1, math.min(count, cap) do
        redis.call("lpush", key, "1")
    end
    redis.call("ltrim", key, 0, cap - 1)
end
return 0
"""

#: KEYS = [this consumer's ack set, its queue's message hash, the heartbeats]; ARGV = [now ms, broker id,
#: redis ids separated by spaces]: dispatch.lua's "ack" (and its heartbeat) for many messages in one command.
ACK_MANY_LUA = """
redis.call("zadd", KEYS[3], ARGV[1], ARGV[2])
local done = 0
for id in string.gmatch(ARGV[3], "[^ ]+") do
    if redis.call("srem", KEYS[1], id) > 0 then
        redis.call("hdel", KEYS[2], id)
        done = done + 1
    end
end
return done
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
        self._ack_many = self.client.register_script(ACK_MANY_LUA)
        self._enqueue_many = self.client.register_script(ENQUEUE_MANY_LUA)
        self.acker = Acker(self)

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return NexusConsumer

    def wake_key(self, queue_name: str) -> str:
        """The list idle consumers of `queue_name` (a queue or a delay queue) BLPOP on."""
        # Dramatiq queue names cannot contain ":", so this never collides with a queue's own keys.
        return f"{self.namespace}:wake:{queue_name}"

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Enqueue one message (delay in ms) and wake an idle consumer, in one round trip."""
        return self._send([(message, delay)])[0]

    def enqueue_many(self, items: list[tuple[Message[Any], int | None]]) -> None:
        """Enqueue many (message, delay ms or None) pairs in one round trip (one script call)."""
        if items:
            self._send(items)

    def _send(self, items: Iterable[tuple[Message[Any], int | None]]) -> list[Message[Any]]:
        prepared = [self._prepare(message, delay) for message, delay in items]
        # The same hooks, in the same order per message, as RedisBroker.enqueue emits.
        for message, delay in prepared:
            self.emit_before("enqueue", message, delay)
        batch = json.dumps([(m.queue_name, m.options["redis_message_id"], m.encode().decode()) for m, _ in prepared],
                           separators=(",", ":"), ensure_ascii=False)
        args = [current_millis(), self.broker_id, MAX_WAKE_TOKENS, batch]
        script = self._enqueue_many
        for attempt in (1, 2):
            try:
                # Raw EVALSHA: passing the Script object would make redis-py add a SCRIPT EXISTS round trip.
                self.client.evalsha(script.sha, 1, self.namespace, *args)
                break
            except redis.exceptions.NoScriptError:
                # The server lost its script cache (restarted): nothing ran, so sending again cannot
                # enqueue a message twice.
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
        options = {**message.options, "redis_message_id": f"{message.message_id}/{uuid4().hex}"}
        queue_name = message.queue_name
        if delay is not None:
            queue_name, options["eta"] = dq_name(queue_name), current_millis() + delay
        # Message.copy does this through dataclasses.replace, which costs more than the rest of a send.
        message = Message(queue_name=queue_name, actor_name=message.actor_name, args=message.args,
                          kwargs=message.kwargs, options=options, message_id=message.message_id,
                          message_timestamp=message.message_timestamp)
        self.logger.debug("Enqueueing message %r on queue %r.", message.message_id, message.queue_name)
        return message, delay

    def own_wake_key(self, queue_name: str) -> str:
        """The wake list only this process's consumer of `queue_name` blocks on, besides the shared one."""
        return f"{self.wake_key(queue_name)}:{self.broker_id}"

    def wake_consumers(self, queue_names: list[str]) -> None:
        """Wake this process's consumers of these queues now (they are stopping), wherever they block."""
        pipe = self.client.pipeline(transaction=False)
        for name in queue_names:
            pipe.lpush(self.own_wake_key(name), "1")
            pipe.ltrim(self.own_wake_key(name), 0, 0)
        try:
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # Redis is gone: their blocking calls fail on their own

    def heartbeat(self) -> None:
        """Tell other processes' Dramatiq maintenance this broker is alive (stock consumers do it with every fetch)."""
        self.client.zadd(f"{self.namespace}:__heartbeats__", {self.broker_id: current_millis()})

    def ack_many(self, acks: dict[str, list[str]]) -> None:
        """Acknowledge messages this broker fetched, queue -> redis ids, in one round trip."""
        ns, script = self.namespace, self._ack_many
        calls = [(3, f"{ns}:__acks__.{self.broker_id}.{queue_name}", f"{ns}:{queue_name}.msgs", f"{ns}:__heartbeats__",
                  current_millis(), self.broker_id, " ".join(redis_ids)) for queue_name, redis_ids in acks.items()]
        for attempt in (1, 2):
            try:
                if len(calls) == 1:  # the usual case: no pipeline to build
                    self.client.evalsha(script.sha, *calls[0])
                else:
                    pipe = self.client.pipeline(transaction=False)
                    for call in calls:
                        pipe.evalsha(script.sha, *call)
                    pipe.execute()
                return
            except redis.exceptions.NoScriptError:
                if attempt == 2:  # acks are idempotent, so sending the batch again is safe
                    raise
                script.sha = self.client.script_load(script.script)

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
        """Stop the acker and close the command connections (each consumer closes its own blocking one)."""
        self.acker.stop()
        self.client.close()
        self.client.connection_pool.disconnect()  # a pool passed in is not closed by close()


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
