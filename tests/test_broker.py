"""NexusRedisBroker on a real Redis with real in-process Dramatiq workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from nexus_daemon.broker import MAX_WAKE_TOKENS, NexusRedisBroker, make_broker
from nexus_daemon.consumer import AckAfter, defer_ack, defers_acks
from nexus_daemon.workers import NexusWorker


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """The configured Redis, else a private redis-server on a Unix socket for this module."""
    url = os.environ.get("NEXUS_TEST_REDIS_URL")
    if url:
        yield url
        return
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("no redis-server on PATH and NEXUS_TEST_REDIS_URL is not set")
    folder = tempfile.mkdtemp(prefix="nx", dir="/tmp")
    sock = os.path.join(folder, "r.sock")
    proc = subprocess.Popen([exe, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
                             "--dir", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(unix_socket_path=sock) as client:
                    client.ping()
                break
            except (redis.ConnectionError, FileNotFoundError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


class Recorder(Middleware):
    """Counts the enqueue hooks, to check enqueue_many emits what enqueue does."""

    def __init__(self) -> None:
        self.before: list[str] = []
        self.after: list[str] = []

    def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        self.before.append(message.message_id)

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        self.after.append(message.message_id)


class Node:
    """One broker + one Worker + a `job` actor that records when (and where) each message started."""

    def __init__(self, url: str, ns: str, label: str, middleware: list[Middleware] | None = None):
        self.label = label
        self.broker = make_broker(url, namespace=ns, middleware=middleware, set_global=False)
        self.starts: dict[str, list[tuple[str, float]]] = {}
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.worker: dramatiq.Worker | None = None
        dramatiq.Actor(self.job, broker=self.broker, actor_name="job", queue_name="automation", priority=0,
                       options={})

    def job(self, key: str, block: bool = False, sleep: float = 0.0) -> None:
        with self.lock:
            self.starts.setdefault(key, []).append((self.label, time.time()))
        if block:
            self.gate.wait(20)
        time.sleep(sleep)

    def start(self, queues: set[str] | None = None, threads: int = 4) -> "Node":
        self.worker = dramatiq.Worker(self.broker, queues=queues, worker_threads=threads)
        self.worker.start()
        return self

    def send(self, key: str, queue: str = "automation", delay: int | None = None, **kw: Any) -> float:
        sent = time.time()
        self.broker.enqueue(message(key, queue, **kw), delay=delay)
        return sent

    def stop(self) -> None:
        self.gate.set()
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        self.broker.close()


def message(key: str, queue: str = "automation", **kwargs: Any) -> Message[Any]:
    return Message(queue_name=queue, actor_name="job", args=(key,), kwargs=kwargs, options={}, message_id=key)


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def all_started(nodes: list[Node], keys: list[str]) -> Callable[[], bool]:
    return lambda: all(any(k in n.starts for n in nodes) for k in keys)


@pytest.fixture
def ns(redis_url: str) -> Iterator[str]:
    name = f"nxt{uuid.uuid4().hex[:10]}"
    yield name
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{name}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def make_node(redis_url: str, ns: str) -> Iterator[Callable[..., Node]]:
    made: list[Node] = []

    def make(label: str = "w1", **kw: Any) -> Node:
        node = Node(redis_url, ns, label, **kw)
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


def test_idle_worker_starts_a_sent_message_promptly(make_node, redis_url, ns):
    node = make_node().start()
    for i in range(2):
        time.sleep(2.0)  # long enough for the stock consumer to have backed off to ~1 s sleeps
        sent = node.send(f"idle{i}")
        wait_until(all_started([node], [f"idle{i}"]))
        assert node.starts[f"idle{i}"][0][1] - sent < 0.5
    # Idle consumers still fetch once per block, and every fetch refreshes the heartbeat.
    with redis.Redis.from_url(redis_url) as client:
        beat = client.zscore(f"{ns}:__heartbeats__", node.broker.broker_id)
    assert beat is not None and time.time() * 1000 - beat < 2500


def test_delayed_messages_arrive_after_their_delay_not_before(make_node):
    node = make_node().start()
    time.sleep(0.5)
    t_long = node.send("long", delay=1500)
    t_short = node.send("short", delay=300)  # sent later, due earlier: the waiting DQ consumer must wake
    time.sleep(0.2)
    assert not node.starts
    wait_until(all_started([node], ["short"]))
    short_at = node.starts["short"][0][1]
    assert 0.299 <= short_at - t_short < 1.0
    assert "long" not in node.starts
    wait_until(all_started([node], ["long"]))
    assert 1.499 <= node.starts["long"][0][1] - t_long < 2.5


def test_enqueue_many_delivers_every_message_once_with_hooks(make_node):
    recorder = Recorder()
    node = make_node(middleware=[recorder]).start(threads=8)
    queues = ["automation", "email", "sync", "report", "webhook"]
    keys = [f"m{i}" for i in range(600)]
    items = [(message(k, queues[i % 5]), 200 if i % 10 == 0 else None) for i, k in enumerate(keys)]
    node.broker.enqueue_many(items)
    node.broker.enqueue_many([])
    wait_until(all_started([node], keys))
    time.sleep(0.3)
    assert sorted(node.starts) == sorted(keys)
    assert all(len(v) == 1 for v in node.starts.values())
    # Every message got the before/after enqueue hooks; delayed ones get a second pair when moved.
    assert sorted(set(recorder.before)) == sorted(keys) == sorted(set(recorder.after))
    assert len(recorder.before) == len(recorder.after) == 600 + 60


def test_message_ids_present_sees_queued_delayed_and_in_flight(make_node, redis_url, ns):
    node = make_node().start(queues={"automation"})  # nothing consumes "email"
    node.send("queued", queue="email")
    node.send("delayed-held", delay=60_000)  # fetched into the worker's delay queue (unacked)
    node.send("delayed-waiting", queue="email", delay=60_000)  # still in Redis' delay queue list
    node.send("running", block=True)
    node.send("done")
    stock = RedisBroker(url=redis_url, namespace=ns, middleware=[])  # a stock-format Redis id
    stock.enqueue(message("stock", "email"))
    stock.client.connection_pool.disconnect()
    wait_until(all_started([node], ["running", "done"]))
    want = ["queued", "delayed-held", "delayed-waiting", "running", "done", "stock", "never-sent"]

    def present() -> set[str]:
        return node.broker.message_ids_present("email", want) | node.broker.message_ids_present("automation", want)

    wait_until(lambda: "done" not in present())  # acked just after the actor returns
    assert present() == {"queued", "delayed-held", "delayed-waiting", "running", "stock"}
    assert node.broker.message_ids_present("automation", ["queued"]) == set()
    assert node.broker.message_ids_present("automation", []) == set()
    depths = node.broker.queue_depths()
    assert depths["email"] == {"ready": 2, "unacked": 0, "delayed": 1}
    assert depths["automation"]["unacked"] == 1 and depths["automation"]["delayed"] == 1
    node.gate.set()
    wait_until(lambda: "running" not in present())


def test_an_actor_may_leave_its_ack_until_its_outcome_is_written(make_node, redis_url, ns):
    """What the executor does with a run's outcome: the thread goes on while the message stays unacked,
    then is acked once the outcome is written, or rejected (dead-lettered) when it could not be; a
    stopping worker waits for the outcomes still being written."""
    node = make_node()
    pending: dict[str, AckAfter] = {}
    on_nexus_thread: list[bool] = []

    def deferring(key: str) -> None:
        on_nexus_thread.append(defers_acks())
        after = AckAfter()
        pending[key] = after
        defer_ack(after)

    dramatiq.Actor(deferring, broker=node.broker, actor_name="deferring", queue_name="automation", priority=0,
                   options={})
    node.worker = NexusWorker(node.broker, queues={"automation"}, worker_threads=2)  # holds 8 messages
    node.worker.start()
    keys = ["written", "failed", "late"]
    node.broker.enqueue_many([(Message(queue_name="automation", actor_name="deferring", args=(k,), kwargs={},
                                       options={}, message_id=k), None) for k in keys])
    wait_until(lambda: len(pending) == 3)
    assert on_nexus_thread == [True, True, True]
    node.send("next")  # the threads are free while three outcomes are outstanding
    wait_until(all_started([node], ["next"]))

    def present() -> set[str]:
        return node.broker.message_ids_present("automation", [*keys, "next"])

    wait_until(lambda: "next" not in present())
    assert present() == set(keys), "unacked until their outcome is written"
    pending["written"].done(True)
    wait_until(lambda: "written" not in present())
    pending["failed"].done(False)
    wait_until(lambda: "failed" not in present())
    with redis.Redis.from_url(redis_url) as client:
        dead = {k.decode().split("/")[0] for k in client.hkeys(f"{ns}:automation.XQ.msgs")}
    assert dead == {"failed"}, "an outcome that could not be written rejects its message"
    assert present() == {"late"}
    threading.Timer(0.5, pending["late"].done, (True,)).start()
    node.worker.stop()  # the consumer closes only after the late outcome, and sends its ack
    node.worker = None
    assert present() == set()


def test_two_workers_share_a_queue_without_loss_or_duplicates(make_node):
    a = make_node("a").start(threads=2)
    b = make_node("b").start(threads=2)
    time.sleep(1.5)
    # Idle: each message wakes one of the two blocked consumers, promptly.
    for i in range(8):
        sent = a.send(f"idle{i}")
        wait_until(all_started([a, b], [f"idle{i}"]))
        started = next(n.starts[f"idle{i}"][0][1] for n in (a, b) if f"idle{i}" in n.starts)
        assert started - sent < 0.5
        time.sleep(0.15)
    # Busy: a burst is shared by both processes.
    keys = [f"burst{i}" for i in range(300)]
    a.broker.enqueue_many([(message(k, sleep=0.005), None) for k in keys])
    wait_until(all_started([a, b], keys), timeout=30)
    time.sleep(0.5)
    runs = [(k, label) for n in (a, b) for k, v in n.starts.items() for label, _ in v]
    assert sorted(k for k, _ in runs) == sorted(keys + [f"idle{i}" for i in range(8)])
    assert {label for k, label in runs if k.startswith("burst")} == {"a", "b"}


def test_make_broker_declares_queues_and_installs_no_default_middleware(redis_url, ns):
    broker = make_broker(redis_url, namespace=ns, set_global=False)
    try:
        assert isinstance(broker, NexusRedisBroker)
        assert broker.get_declared_queues() == {"automation", "email", "sync", "report", "webhook"}
        assert broker.middleware == []
        assert broker.client.ping()
    finally:
        broker.close()


def test_wake_list_stays_bounded_without_consumers(redis_url, ns):
    broker = make_broker(redis_url, namespace=ns, set_global=False)
    try:
        broker.enqueue_many([(message(f"b{i}"), None) for i in range(50)])
        for i in range(20):
            broker.enqueue(message(f"s{i}"))
        assert broker.client.llen(broker.wake_key("automation")) == MAX_WAKE_TOKENS
        assert broker.client.llen(f"{ns}:automation") == 70
    finally:
        broker.close()


def test_closed_consumer_hands_back_held_messages_even_when_redis_fails(redis_url, ns):
    broker = make_broker(redis_url, namespace=ns, set_global=False)
    try:
        broker.enqueue(message("later"), delay=60_000)
        consumer = broker.consume("automation.DQ", prefetch=10, timeout=1000)
        held = next(m for m in consumer if m is not None)  # the ConsumerThread would now keep it in memory
        assert held.message_id == "later" and broker.client.llen(f"{ns}:automation.DQ") == 0

        def down(*args: Any) -> None:
            raise redis.ConnectionError("down")

        broker.do_requeue = down  # type: ignore[method-assign]
        consumer.close()  # e.g. after a connection error, which makes the ConsumerThread drop its delay queue
        assert broker.client.llen(f"{ns}:automation.DQ") == 0
        del broker.do_requeue
        successor = broker.consume("automation.DQ", prefetch=10, timeout=1000)
        again = next(m for m in successor if m is not None)  # its first call requeues, then fetches it again
        assert again.message_id == "later"
        successor.close()  # and closing hands it back to Redis' delay queue list
        assert broker.client.llen(f"{ns}:automation.DQ") == 1
        assert broker.message_ids_present("automation", ["later"]) == {"later"}
    finally:
        broker.close()
