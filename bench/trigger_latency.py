"""Trigger → handler-start latency of a `noop` workflow over RPC, and the idle daemon's CPU, vs bare Dramatiq.

    .venv/bin/python bench/trigger_latency.py [--burst N] [--idle-count N] [--interval S] [--idle-seconds S]
                                              [--redis URL] [--database URL] [--no-bare]

Latency is run.started_at (the worker's claim, written by the handler as it starts) minus the time the
`workflows.trigger` request was sent; both are read off this machine's clock.  Two shapes:
  burst: N triggers back to back, each request waiting for its answer before the next (one connection);
  idle:  N triggers `interval` seconds apart on an otherwise idle daemon.
Idle CPU: utime+stime of the daemon process and of its embedded redis-server over an idle window, as %
of one core.  Bare Dramatiq (stock RedisBroker + Worker, no middleware) is measured on the same Redis in
the same run with bench/_baseline.py; note its burst sends are fire-and-forget `actor.send`s.
"""

from __future__ import annotations

import argparse
import time

from _nexus import BenchDaemon, add_common_args, describe_machine, run_times, wait_for_runs
from _proc import busiest_threads, cpu_seconds, thread_cpu
from _baseline import (
    bare_burst_latency,
    bare_idle_cpu,
    bare_idle_latency,
    percentile,
    print_header,
    print_row,
)

WORKFLOW = "bench-noop"
TARGET_P50_MS, TARGET_P99_MS, TARGET_IDLE_CPU = 10.0, 25.0, 2.0


def trigger_series(nx: BenchDaemon, count: int, interval: float) -> list[dict[str, float]]:
    """Send `count` triggers on one connection (interval 0: back to back); per run: sent, answered, created, started."""
    sent: list[tuple[str, float, float]] = []
    with nx.rpc() as c:
        t0 = time.monotonic()
        for i in range(count):
            if interval:
                time.sleep(max(0.0, t0 + i * interval - time.monotonic()))
            ans = c.timed_call("workflows.trigger", {"name": WORKFLOW})
            if ans.error:
                raise RuntimeError(f"trigger failed: {ans.error}")
            sent.append((ans.result["id"], ans.sent, ans.answered))
    ids = [s[0] for s in sent]
    wait_for_runs(nx.db(), ids, timeout=120)
    times = run_times(nx.db(), ids)
    out = []
    for run_id, t_sent, t_answered in sent:
        created, started, finished, _ = times[run_id]
        out.append({"sent": t_sent, "answered": t_answered, "created": created, "started": started,
                    "finished": finished})
    return out


def ms(values: list[float], p: float) -> float:
    return percentile(values, p) * 1000


def breakdown(label: str, rows: list[dict[str, float]]) -> None:
    """Where the send→start time goes, from the run rows' own timestamps."""
    parts = {
        "send → start (total)": [r["started"] - r["sent"] for r in rows],
        "send → created_at (rpc, write)": [r["created"] - r["sent"] for r in rows],
        "created_at → started_at (queue)": [r["started"] - r["created"] for r in rows],
        "send → answer received": [r["answered"] - r["sent"] for r in rows],
        "started_at → finished_at": [r["finished"] - r["started"] for r in rows],
    }
    print(f"\n{label} ({len(rows)} runs), nexus only, ms")
    print(f"  {'':<34} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for name, values in parts.items():
        print(f"  {name:<34} {ms(values, 50):>8.2f} {ms(values, 90):>8.2f} {ms(values, 99):>8.2f} "
              f"{ms(values, 100):>8.2f}")


def idle_cpu(nx: BenchDaemon, seconds: float) -> tuple[float, float | None, str]:
    """% of one core the daemon (and its redis-server) use over an idle window, plus the daemon's busiest threads."""
    redis_pid = nx.redis_pid
    time.sleep(2.0)  # let consumers settle after the last runs
    w0 = time.monotonic()
    d0, r0 = cpu_seconds(nx.pid), cpu_seconds(redis_pid) if redis_pid else 0.0
    th0 = thread_cpu(nx.pid)
    time.sleep(seconds)
    wall = time.monotonic() - w0
    d1, r1 = cpu_seconds(nx.pid), cpu_seconds(redis_pid) if redis_pid else 0.0
    threads = busiest_threads(nx.pid, th0, thread_cpu(nx.pid), wall)
    return (d1 - d0) / wall * 100, ((r1 - r0) / wall * 100 if redis_pid else None), threads


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=1000, help="back-to-back triggers (default 1000)")
    parser.add_argument("--idle-count", type=int, default=60, help="triggers on an idle daemon (default 60)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between idle triggers (default 1)")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle window for the CPU reading (default 30)")
    parser.add_argument("--warmup", type=int, default=20, help="triggers before measuring (default 20)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-Dramatiq baselines")
    add_common_args(parser)
    args = parser.parse_args()

    print(f"trigger_latency: burst={args.burst} idle={args.idle_count}x{args.interval}s "
          f"cpu-window={args.idle_seconds}s  [{describe_machine()}]", flush=True)
    with BenchDaemon.from_args(args) as nx:
        print(nx.describe(), flush=True)
        nx.create_noop(WORKFLOW)
        if args.warmup:
            trigger_series(nx, args.warmup, 0.0)
        t = time.monotonic()
        burst = trigger_series(nx, args.burst, 0.0)
        print(f"  nexus burst done in {time.monotonic() - t:.1f}s", flush=True)
        time.sleep(2.0)
        t = time.monotonic()
        idle = trigger_series(nx, args.idle_count, args.interval)
        print(f"  nexus idle series done in {time.monotonic() - t:.1f}s", flush=True)
        cpu_daemon, cpu_redis, threads = idle_cpu(nx, args.idle_seconds)
        print(f"  nexus idle CPU measured over {args.idle_seconds:.0f}s", flush=True)

        bare: dict[str, object] = {}
        if not args.no_bare:
            t = time.monotonic()
            bare["burst"] = bare_burst_latency(nx.redis_url, args.burst)
            bare["idle"] = bare_idle_latency(nx.redis_url, args.idle_count, args.interval)
            bare["cpu"] = bare_idle_cpu(nx.redis_url, args.idle_seconds, server_pid=nx.redis_pid)
            print(f"  bare dramatiq measured in {time.monotonic() - t:.0f}s (same Redis, daemon idle meanwhile)",
                  flush=True)

    nx_burst = [r["started"] - r["sent"] for r in burst]
    nx_idle = [r["started"] - r["sent"] for r in idle]
    print()
    if bare:
        print_header()
        for label, nx_vals, key in (("burst send→start", nx_burst, "burst"), ("idle send→start", nx_idle, "idle")):
            for p in (50, 99, 100):
                tag = "max" if p == 100 else f"p{p}"
                print_row(f"{label} {tag}", ms(nx_vals, p), ms(bare[key], p), "ms")  # type: ignore[arg-type]
        bare_cpu = bare["cpu"]  # type: ignore[assignment]
        print_row("idle CPU, daemon / bare proc", cpu_daemon, bare_cpu[0] * 100, "%core")  # type: ignore[index]
        if cpu_redis is not None and bare_cpu[1] is not None:  # type: ignore[index]
            print_row("idle CPU, redis-server", cpu_redis, bare_cpu[1] * 100, "%core")  # type: ignore[index]
        print("  (bare burst = actor.send back to back, fire-and-forget; nexus burst = trigger request→answer "
              "in sequence; bare redis-server CPU includes the idle daemon's consumers)")
    else:
        for label, vals in (("burst send→start", nx_burst), ("idle send→start", nx_idle)):
            print(f"{label:<30} p50 {ms(vals, 50):.2f} ms  p99 {ms(vals, 99):.2f} ms  max {ms(vals, 100):.2f} ms")
        print(f"idle CPU daemon {cpu_daemon:.2f} %core, redis-server "
              f"{'n/a' if cpu_redis is None else f'{cpu_redis:.2f} %core'}")

    breakdown("burst", burst)
    breakdown("idle", idle)
    print(f"\nidle daemon CPU by thread (%core): {threads}")

    print("\ntargets")
    for label, vals in (("burst", nx_burst), ("idle", nx_idle)):
        p50, p99 = ms(vals, 50), ms(vals, 99)
        print(f"  {label:<6} p50 {p50:7.2f} ms (≤ {TARGET_P50_MS:g}) {verdict(p50 <= TARGET_P50_MS):<7}"
              f" p99 {p99:7.2f} ms (≤ {TARGET_P99_MS:g}) {verdict(p99 <= TARGET_P99_MS)}")
    total = cpu_daemon + (cpu_redis if nx.embedded_redis and cpu_redis is not None else 0.0)
    print(f"  idle daemon CPU {cpu_daemon:.2f} %core"
          + (f" + embedded redis {cpu_redis:.2f} = {total:.2f}" if nx.embedded_redis and cpu_redis is not None else "")
          + f" (< {TARGET_IDLE_CPU:g}) {verdict(total < TARGET_IDLE_CPU)}")


if __name__ == "__main__":
    main()
