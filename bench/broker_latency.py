"""Send→start latency, drain rate and idle CPU of NexusRedisBroker vs bare Dramatiq, measured in one run.

    python bench/broker_latency.py [--redis URL] [--count N] [--interval S] [--drain N] [--burst N] [--idle S]

Without --redis it starts a private redis-server on a Unix socket (and also reports that server's CPU).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, for nexus_daemon

import redis  # noqa: E402

from _baseline import (  # noqa: E402
    bare_broker,
    burst_latency,
    drain_rate,
    idle_cpu,
    idle_latency,
    percentile,
    print_header,
    print_row,
)
from nexus_daemon.broker import make_broker  # noqa: E402


def nexus_broker(url: str, namespace: str):
    return make_broker(url, namespace=namespace, set_global=False)


def start_redis() -> tuple[subprocess.Popen[bytes], str, str]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("no redis-server on PATH; pass --redis URL")
    folder = tempfile.mkdtemp(prefix="nx", dir="/tmp")
    sock = os.path.join(folder, "r.sock")
    proc = subprocess.Popen([exe, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
                             "--dir", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with redis.Redis(unix_socket_path=sock) as client:
                client.ping()
            return proc, folder, f"unix://{sock}"
        except (redis.ConnectionError, FileNotFoundError):
            if time.monotonic() > deadline:
                proc.kill()
                sys.exit("redis-server did not start")
            time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", help="redis:// or unix:// URL (default: a private redis-server)")
    parser.add_argument("--count", type=int, default=60, help="jobs sent to an idle worker")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between those jobs")
    parser.add_argument("--drain", type=int, default=20000, help="jobs pre-enqueued for the drain rate")
    parser.add_argument("--burst", type=int, default=1000, help="jobs sent back to back")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle for the CPU measurement")
    args = parser.parse_args()

    proc = folder = None
    url = args.redis
    if url is None:
        proc, folder, url = start_redis()
    pid = proc.pid if proc else None
    try:
        print(f"redis: {url}  count={args.count} interval={args.interval}s drain={args.drain} "
              f"burst={args.burst} idle={args.idle}s", flush=True)
        results = {}
        for name, factory in (("nexus", nexus_broker), ("bare", bare_broker)):
            t0 = time.perf_counter()
            results[name] = {
                "drain": drain_rate(factory, url, args.drain),
                "idle": idle_latency(factory, url, args.count, args.interval),
                "burst": burst_latency(factory, url, args.burst),
                "cpu": idle_cpu(factory, url, args.idle, server_pid=pid),
            }
            print(f"  measured {name} in {time.perf_counter() - t0:.0f}s", flush=True)
        nx, bare = results["nexus"], results["bare"]
        print()
        print_header()
        print_row("drain rate", nx["drain"], bare["drain"], "jobs/s")
        for label, key in (("idle send→start", "idle"), ("burst send→start", "burst")):
            for p in (50, 99, 100):
                tag = "max" if p == 100 else f"p{p}"
                print_row(f"{label} {tag}", percentile(nx[key], p) * 1000, percentile(bare[key], p) * 1000, "ms")
        print_row("idle CPU, this process", nx["cpu"][0] * 100, bare["cpu"][0] * 100, "%core")
        if pid:
            print_row("idle CPU, redis-server", nx["cpu"][1] * 100, bare["cpu"][1] * 100, "%core")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
