"""Bare-Dramatiq baselines (stock RedisBroker and consumer) that other benchmarks compare against in the same run."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

#: The daemon's queues; the bare broker declares the same ones so both Workers run as many consumers.
QUEUES = ("automation", "email", "sync", "report", "webhook")
WORKER_THREADS = 8  # Dramatiq's default


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation, like numpy's default."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def print_row(label: str, nexus_value: float, bare_value: float, unit: str) -> None:
    """Print one measurement for Nexus and bare Dramatiq, and their ratio (Nexus / bare)."""
    ratio = nexus_value / bare_value if bare_value else math.inf
    print(f"{label:<30} {nexus_value:>11.2f} {unit:<6} {bare_value:>11.2f} {unit:<6} {ratio:>8.2f}x", flush=True)


def print_header() -> None:
    """Column titles for print_row."""
    print(f"{'':<30} {'nexus':>11} {'':<6} {'bare dramatiq':>11} {'':<6} {'nexus/bare':>9}", flush=True)


def new_namespace(prefix: str = "nxb") -> str:
    """A unique key namespace, so runs never see each other's keys."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def bare_broker(url: str, namespace: str) -> RedisBroker:
    """Stock RedisBroker with no middleware and the daemon's queues declared."""
    broker = RedisBroker(url=url, namespace=namespace, middleware=[])
    for queue_name in QUEUES:
        broker.declare_queue(queue_name)
    return broker


def cleanup(url: str, namespace: str) -> None:
    """Delete every key of a namespace."""
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])


class Probe:
    """A no-op actor that counts its runs and records send→start latency when given a send time."""

    def __init__(self, broker: dramatiq.Broker):
        self.broker = broker
        self.lock = threading.Lock()
        self.count = 0
        self.target = math.inf
        self.done = threading.Event()
        self.latencies: list[float] = []
        self.actor = dramatiq.Actor(self.run, broker=broker, actor_name="bench_noop", queue_name="automation",
                                    priority=0, options={})
        self.worker: dramatiq.Worker | None = None

    def run(self, sent: float | None = None) -> None:
        now = time.perf_counter()
        with self.lock:
            self.count += 1
            if sent is not None:
                self.latencies.append(now - sent)
            if self.count >= self.target:
                self.done.set()

    def expect(self, total: int) -> None:
        with self.lock:
            self.target = total
            if self.count >= total:
                self.done.set()

    def start(self) -> None:
        self.worker = dramatiq.Worker(self.broker, worker_threads=WORKER_THREADS)
        self.worker.start()

    def send(self) -> None:
        self.actor.send(time.perf_counter())

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.broker.close()
        self.broker.client.close()
        self.broker.client.connection_pool.disconnect()


Factory = Callable[[str, str], Any]


def _run(factory: Factory, url: str, namespace: str | None, body: Callable[[Probe], Any]) -> Any:
    namespace = namespace or new_namespace()
    probe = Probe(factory(url, namespace))
    try:
        return body(probe)
    finally:
        probe.close()
        cleanup(url, namespace)


def drain_rate(factory: Factory, url: str, n: int = 20000, namespace: str | None = None) -> float:
    """Jobs/s for one in-process Worker draining n pre-enqueued no-op jobs."""

    def body(probe: Probe) -> float:
        message, script = probe.actor.message(), probe.broker.scripts["dispatch"]
        # Pre-fill through the stock Lua script for both brokers: fast, identical, and not timed.
        for start in range(0, n, 1000):
            with probe.broker.client.pipeline(transaction=False) as pipe:
                for _ in range(start, min(n, start + 1000)):
                    copy = message.copy(message_id=str(uuid.uuid4()), options={"redis_message_id": str(uuid.uuid4())})
                    args = ["enqueue", int(time.time() * 1000), "automation", probe.broker.broker_id,
                            60000, 86400000, 0, 1000, copy.options["redis_message_id"], copy.encode()]
                    script(keys=[probe.broker.namespace], args=args, client=pipe)
                pipe.execute()
        probe.expect(n)
        t0 = time.perf_counter()
        probe.start()
        if not probe.done.wait(600):
            raise RuntimeError(f"drained only {probe.count} of {n} jobs")
        return n / (time.perf_counter() - t0)

    return _run(factory, url, namespace, body)


def idle_latency(factory: Factory, url: str, count: int = 60, interval: float = 1.0,
                 namespace: str | None = None, idle_first: float = 2.0) -> list[float]:
    """Seconds from send to actor start for jobs sent `interval` apart to an otherwise idle Worker."""

    def body(probe: Probe) -> list[float]:
        probe.start()
        time.sleep(idle_first)
        t0 = time.perf_counter()
        for i in range(count):
            time.sleep(max(0.0, t0 + i * interval - time.perf_counter()))
            probe.send()
        probe.expect(count)
        if not probe.done.wait(60):
            raise RuntimeError(f"only {probe.count} of {count} jobs ran")
        return list(probe.latencies)

    return _run(factory, url, namespace, body)


def burst_latency(factory: Factory, url: str, n: int = 1000, namespace: str | None = None,
                  idle_first: float = 2.0) -> list[float]:
    """Seconds from send to actor start for n jobs sent back to back to an idle Worker."""

    def body(probe: Probe) -> list[float]:
        probe.start()
        time.sleep(idle_first)
        for _ in range(n):
            probe.send()
        probe.expect(n)
        if not probe.done.wait(120):
            raise RuntimeError(f"only {probe.count} of {n} jobs ran")
        return list(probe.latencies)

    return _run(factory, url, namespace, body)


def _proc_cpu_seconds(pid: int) -> float:
    import os

    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(factory: Factory, url: str, seconds: float = 30.0, namespace: str | None = None,
             server_pid: int | None = None) -> tuple[float, float | None]:
    """Fraction of one core this process (and redis-server, if its pid is given) uses with an idle Worker."""

    def body(probe: Probe) -> tuple[float, float | None]:
        probe.start()
        time.sleep(2.0)  # let the consumers settle into their idle pattern
        w0, p0 = time.perf_counter(), time.process_time()
        s0 = _proc_cpu_seconds(server_pid) if server_pid else 0.0
        time.sleep(seconds)
        wall = time.perf_counter() - w0
        server = (_proc_cpu_seconds(server_pid) - s0) / wall if server_pid else None
        return (time.process_time() - p0) / wall, server

    return _run(factory, url, namespace, body)


def bare_drain_rate(url: str, n: int = 20000, namespace: str | None = None) -> float:
    """Jobs/s bare Dramatiq drains n pre-enqueued no-op jobs at."""
    return drain_rate(bare_broker, url, n, namespace)


def bare_idle_latency(url: str, count: int = 60, interval: float = 1.0, namespace: str | None = None) -> list[float]:
    """Bare Dramatiq's send→start seconds for jobs sent `interval` apart to an idle Worker."""
    return idle_latency(bare_broker, url, count, interval, namespace)


def bare_burst_latency(url: str, n: int = 1000, namespace: str | None = None) -> list[float]:
    """Bare Dramatiq's send→start seconds for n jobs sent back to back."""
    return burst_latency(bare_broker, url, n, namespace)


def bare_idle_cpu(url: str, seconds: float = 30.0, namespace: str | None = None,
                  server_pid: int | None = None) -> tuple[float, float | None]:
    """Bare Dramatiq's idle CPU (fraction of one core) for this process and optionally redis-server."""
    return idle_cpu(bare_broker, url, seconds, namespace, server_pid)
