"""Scheduler at scale: start-up, memory and idle CPU with 1k/10k/100k cron workflows; lateness of mass fires.

    .venv/bin/python bench/scheduler_scale.py [--sizes 1000,10000,100000] [--idle-seconds 60]
                                              [--lateness-at 10000] [--due 1000,10000] [--skip-lateness]
                                              [--database postgresql://postgres@127.0.0.1:5432/test] [--redis URL]
                                              [--chunk 10000] [--due-timeout 120] [--profile DIR [--profile-gil]]

One daemon is grown through the sizes (1,000 → 10,000 → 100,000 active `noop` cron workflows, created
with `workflows.apply` in chunks of --chunk); for each size:
  start-up: SIGTERM the daemon, start it again on the same data, time from the new process's start
            until its socket answers `system.ping` (it loads the whole schedule before it listens);
            a breakdown comes from the daemon's own log lines;
  memory:   VmRSS of the daemon (and of its embedded redis-server) right after that start;
  idle CPU: utime+stime of the daemon and of its redis-server over --idle-seconds with nothing due.
The background workflows are daily `M H * * *` in Europe/Berlin, spread over every minute of the day
except the next two hours, so nothing of theirs fires while the benchmark runs.
Lateness (on the same daemon, right after the --lateness-at size, so with that many background
workflows loaded; the due workflows stay and count towards the later sizes): K extra workflows
(--due, default 1,000 then 10,000) get a 6-field cron `S M H * * *` for one second ~60-90 s ahead;
when all K runs have started (or 120 s passed) the run rows are read from the store: lateness is
started_at - scheduled_for; runs missing are dropped fires.
--profile DIR records the daemon with py-spy (collapsed stacks) during the largest size's idle
window and during each lateness window, and prints where the time went (--profile-gil: only the
thread holding the GIL, i.e. where the Python CPU goes).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from _nexus import BenchDaemon, Rpc, add_common_args, count_by_status, describe_machine, parse_ts
from _proc import (
    PySpy,
    busiest_threads,
    cpu_seconds,
    rss_mib,
    summarize_collapsed,
    thread_cpu,
    thread_names,
    thread_runtime,
)
from _baseline import percentile

ZONE = "Europe/Berlin"
TZ = ZoneInfo(ZONE)
QUIET_MINUTES = 120  # no background workflow fires within this many minutes of its creation
MAX_LINE = 1_000_000  # the daemon reads requests of at most 1 MiB per line
TARGET_READY_S, TARGET_READY_AT = 10.0, 100_000
TARGET_IDLE_CPU_PER_MIN = 1.0
TARGET_P99_1K_MS = 500.0
TARGET_ALL_10K_S = 10.0


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def ms(values: list[float], p: float) -> float:
    return percentile(values, p) * 1000


# -- creating workflows -----------------------------------------------------------------------------


def background_specs(first: int, count: int) -> list[dict[str, object]]:
    """Daily crons `M H * * *` in Europe/Berlin spread over the day, none within QUIET_MINUTES from now."""
    now = datetime.now(TZ)
    minute_now = now.hour * 60 + now.minute
    slots = [m for m in range(1440) if (m - minute_now) % 1440 > QUIET_MINUTES]
    out = []
    for i in range(first, first + count):
        slot = slots[(i * 7919) % len(slots)]  # a stride prime to the slot count spreads neighbours apart
        out.append({"name": f"bg-{i:06d}", "kind": "noop", "cron": f"{slot % 60} {slot // 60} * * *",
                    "timezone": ZONE})
    return out


def apply_specs(c: Rpc, specs: list[dict[str, object]]) -> int:
    """workflows.apply, split further if a chunk's request line would be over the daemon's limit."""
    if len(json.dumps({"workflows": specs}, separators=(",", ":"))) > MAX_LINE and len(specs) > 1:
        half = len(specs) // 2
        return apply_specs(c, specs[:half]) + apply_specs(c, specs[half:])
    result = c.call("workflows.apply", {"workflows": specs})
    return len(result["created"]) + len(result["updated"])


def create_all(nx: BenchDaemon, specs: list[dict[str, object]], chunk: int, label: str) -> tuple[float, float]:
    """Create `specs` in chunks of at most `chunk`, printing progress; returns (seconds, workflows per second)."""
    t0 = time.monotonic()
    done = 0
    with Rpc(nx.socket, timeout=900) as c:
        for start in range(0, len(specs), chunk):
            part = specs[start:start + chunk]
            t = time.monotonic()
            made = apply_specs(c, part)
            if made != len(part):
                raise SystemExit(f"workflows.apply created {made} of {len(part)}")
            done += len(part)
            if len(specs) > chunk:
                took = time.monotonic() - t
                print(f"    {label}: {done:>7}/{len(specs)} created ({len(part)} in {took:.1f} s, "
                      f"{len(part) / took:.0f}/s)", flush=True)
    took = time.monotonic() - t0
    return took, len(specs) / took if took else math.inf


def active_scheduled(nx: BenchDaemon) -> int:
    with nx.db().connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM workflows WHERE status = 'active' "
                                    "AND next_fire_at IS NOT NULL")).scalar_one()


def scheduler_status(nx: BenchDaemon) -> dict[str, object]:
    with nx.rpc() as c:
        return c.call("system.health").get("scheduler") or {}


def wait_scheduler_holds(nx: BenchDaemon, expected: int, timeout: float = 40.0) -> dict[str, object]:
    """Wait until the running scheduler's heap holds `expected` workflows (it re-reads changes asynchronously)."""
    deadline = time.monotonic() + timeout
    status = scheduler_status(nx)
    while status.get("scheduled") != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        status = scheduler_status(nx)
    return status


# -- start-up, memory, idle CPU ---------------------------------------------------------------------


def idle_threads(pid: int, before: dict[int, float], after: dict[int, float], wall: float, top: int = 6) -> str:
    """CPU-ms per minute of the daemon's busiest threads (unnamed Thread-N, i.e. Dramatiq's, summed)."""
    names = thread_names(pid)
    groups: dict[str, list[float]] = {}
    for tid, t in after.items():
        name = names.get(tid, f"tid {tid}")
        if re.fullmatch(r"Thread-\d+", name):
            name = "Thread-N"
        groups.setdefault(name, []).append(t - before.get(tid, 0.0))
    used = sorted(((sum(v), k, len(v)) for k, v in groups.items()), reverse=True)[:top]
    return ", ".join(f"{k}{f' ×{n}' if n > 1 else ''}={v / wall * 60_000:.0f}" for v, k, n in used)


def log_events(nx: BenchDaemon, offset: int) -> list[dict[str, object]]:
    """The daemon's JSON log lines written since byte `offset` of its log."""
    assert nx.proc is not None
    with nx.proc.log_path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    out = []
    for line in text.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict):
            out.append(ev)
    return out


def startup_breakdown(events: list[dict[str, object]], t_start: float) -> tuple[str, float | None]:
    """Seconds after the process start at which the daemon logged its start-up steps; and the schedule load time."""
    marks = []
    load_s = None
    seen: set[str] = set()
    for ev in events:
        name = str(ev.get("event"))
        if name in seen or name not in ("embedded redis started", "database migrated", "schedule loaded",
                                        "daemon started", "listening"):
            continue
        seen.add(name)
        ts = ev.get("timestamp")
        if not isinstance(ts, str):
            continue
        at = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() - t_start
        label = {"embedded redis started": "redis up", "schedule loaded": "schedule loaded",
                 "daemon started": "started", "database migrated": "migrated", "listening": "listening"}[name]
        if name == "schedule loaded":
            load_s = float(ev.get("seconds") or 0.0)  # type: ignore[arg-type]
            label += f" (load {load_s:.2f} s, {ev.get('workflows')} wf)"
        marks.append(f"{label} @{at:.2f}")
    return ", ".join(marks), load_s


def measure_size(nx: BenchDaemon, n: int, idle_seconds: float, profile: Path | None,
                 gil: bool = False) -> dict[str, object]:
    row: dict[str, object] = {"n": n}
    stored = active_scheduled(nx)
    held = wait_scheduler_holds(nx, stored)
    row["stored"], row["held_before"] = stored, held.get("scheduled")
    if held.get("scheduled") != stored:
        print(f"    !! the running scheduler holds {held.get('scheduled')} workflows, the store has {stored} "
              "active scheduled ones", flush=True)

    assert nx.proc is not None
    offset = nx.proc.log_path.stat().st_size
    spy = None
    t_start, ready = nx.restart()
    row["ready_s"] = ready
    row["rss"], row["redis_rss"] = rss_mib(nx.pid), rss_mib(nx.redis_pid)
    text, load_s = startup_breakdown(log_events(nx, offset), t_start)
    row["load_s"] = load_s
    held_after = scheduler_status(nx)
    row["held_after"] = held_after.get("scheduled")
    print(f"    start-up: ready in {ready:.2f} s; {text}, ping answered @{ready:.2f}", flush=True)
    print(f"    memory after start-up: daemon {row['rss']:.1f} MiB"
          + (f", redis-server {row['redis_rss']:.1f} MiB" if row["redis_rss"] is not None else ""), flush=True)
    if held_after.get("scheduled") != stored:
        print(f"    !! after the restart the scheduler holds {held_after.get('scheduled')} of {stored}", flush=True)

    time.sleep(3.0)  # let the first resync and the workers' start-up settle
    if profile is not None:
        spy = PySpy(nx.pid, profile / f"idle-{n}.txt", rate=100, gil=gil)
    redis_pid = nx.redis_pid
    w0 = time.monotonic()
    d0, r0, th0 = cpu_seconds(nx.pid), (cpu_seconds(redis_pid) if redis_pid else 0.0), thread_runtime(nx.pid)
    time.sleep(idle_seconds)
    wall = time.monotonic() - w0
    d1, r1 = cpu_seconds(nx.pid), (cpu_seconds(redis_pid) if redis_pid else 0.0)
    row["idle_daemon"] = (d1 - d0) / wall * 60
    row["idle_redis"] = (r1 - r0) / wall * 60 if redis_pid else None
    row["idle_threads"] = idle_threads(nx.pid, th0, thread_runtime(nx.pid), wall)
    row["rss_idle"] = rss_mib(nx.pid)
    if spy is not None:
        spy.stop()
        row["idle_profile"] = profile / f"idle-{n}.txt"  # type: ignore[operator]
    print(f"    idle {wall:.0f} s: daemon {row['idle_daemon']:.3f} CPU-s/min"
          + (f", redis-server {row['idle_redis']:.3f} CPU-s/min" if row["idle_redis"] is not None else "")
          + f"\n      busiest daemon threads (CPU-ms/min): {row['idle_threads']}", flush=True)
    return row


# -- lateness of many fires in the same second ------------------------------------------------------------


def due_rows(nx: BenchDaemon, prefix: str) -> list[dict[str, object]]:
    with nx.db().connect() as conn:
        rows = conn.execute(sa.text("SELECT workflow_name, status, scheduled_for, created_at, started_at, "
                                    "finished_at FROM runs WHERE workflow_name LIKE :p"), {"p": prefix + "%"})
        return [{"name": r.workflow_name, "status": r.status, "scheduled": parse_ts(r.scheduled_for),
                 "created": parse_ts(r.created_at), "started": parse_ts(r.started_at),
                 "finished": parse_ts(r.finished_at)} for r in rows]


def count_started(nx: BenchDaemon, prefix: str) -> tuple[int, int]:
    """(runs made, runs started) of the workflows named prefix*."""
    with nx.db().connect() as conn:
        r = conn.execute(sa.text("SELECT count(*), count(started_at) FROM runs WHERE workflow_name LIKE :p"),
                         {"p": prefix + "%"}).one()
        return int(r[0]), int(r[1])


def lateness(nx: BenchDaemon, k: int, rate: float, chunk: int, timeout: float,
             profile: Path | None, gil: bool = False) -> dict[str, object]:
    prefix = f"due{k}-"
    est = k / rate if rate else 30.0
    # At least 60 s ahead, and at least 30 s after the creation should be done.
    target = math.ceil(time.time() + max(60.0, est * 1.5 + 30.0))
    local = datetime.fromtimestamp(target, TZ)
    cron = f"{local.minute} {local.hour} * * * {local.second}"
    specs = [{"name": f"{prefix}{i:05d}", "kind": "noop", "cron": cron, "timezone": ZONE} for i in range(k)]
    print(f"  K={k}: cron {cron!r} {ZONE} = {local:%H:%M:%S} local, in {target - time.time():.0f} s", flush=True)
    took, _ = create_all(nx, specs, chunk, f"due{k}")
    left = target - time.time()
    print(f"    created {k} in {took:.1f} s; {left:.1f} s before the fire", flush=True)
    if left < 2.0:
        print("    !! creation finished too close to (or after) the fire: the numbers below are not meaningful",
              flush=True)
    # Wait for the scheduler to pick them up (it re-reads changes after each apply).
    status = wait_scheduler_holds(nx, active_scheduled(nx), timeout=max(1.0, left - 1.0))

    spy = None
    if profile is not None:
        time.sleep(max(0.0, target - time.time() - 3.0))
        spy = PySpy(nx.pid, profile / f"due-{k}.txt", rate=200, gil=gil)
    time.sleep(max(0.0, target - time.time() - 0.5))
    redis_pid = nx.redis_pid
    d0, r0, th0 = cpu_seconds(nx.pid), (cpu_seconds(redis_pid) if redis_pid else 0.0), thread_cpu(nx.pid)
    w0 = time.time()
    deadline = target + timeout
    made = started = 0
    while time.time() < deadline:
        made, started = count_started(nx, prefix)
        if started >= k:
            break
        time.sleep(0.25)
    t_seen = time.time()
    wall = t_seen - w0
    d1, r1 = cpu_seconds(nx.pid), (cpu_seconds(redis_pid) if redis_pid else 0.0)
    threads = busiest_threads(nx.pid, th0, thread_cpu(nx.pid), wall, top=5)
    if spy is not None:
        spy.stop()
    # Let the last ones finish so their rows are complete (started is what counts, though).
    end = time.time() + 15
    while time.time() < end:
        rows = due_rows(nx, prefix)
        if all(r["finished"] is not None for r in rows):
            break
        time.sleep(0.25)
    rows = due_rows(nx, prefix)
    ran = [r for r in rows if r["started"] is not None]
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    late = [r["started"] - r["scheduled"] for r in ran]  # type: ignore[operator]
    fire = [r["created"] - r["scheduled"] for r in rows if r["created"] is not None]  # type: ignore[operator]
    queue = [r["started"] - r["created"] for r in ran]  # type: ignore[operator]
    wrong = sum(1 for r in rows if r["scheduled"] is not None and abs(r["scheduled"] - target) > 1e-3)
    out = {"k": k, "made": len(rows), "ran": len(ran), "statuses": statuses, "late": late, "fire": fire,
           "queue": queue, "wrong_time": wrong, "held": status.get("scheduled"),
           "cpu_daemon": d1 - d0, "cpu_redis": (r1 - r0) if redis_pid else None, "wall": wall, "threads": threads,
           "last_started": max((r["started"] for r in ran), default=math.nan) - target,  # type: ignore[type-var]
           "last_finished": max((r["finished"] for r in ran if r["finished"]), default=math.nan) - target,  # type: ignore[type-var]
           "profile": profile / f"due-{k}.txt" if profile is not None else None}
    print(f"    {len(ran)}/{k} started ({len(rows)} run rows; statuses {statuses}); last started "
          f"{out['last_started']:.2f} s after the scheduled second", flush=True)
    return out


def print_lateness(res: dict[str, object]) -> None:
    k = res["k"]
    print(f"\n{k} workflows due in the same second: {res['ran']}/{k} ran, {k - res['ran']} dropped "  # type: ignore[operator]
          f"(run rows {res['made']}, statuses {res['statuses']}"
          + (f", {res['wrong_time']} with another scheduled_for" if res["wrong_time"] else "") + ")")
    print(f"  {'ms after the scheduled second':<44} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for label, key in (("lateness: started_at - scheduled_for", "late"),
                       ("  fire: created_at - scheduled_for (¹)", "fire"),
                       ("  queue: started_at - created_at", "queue")):
        vals = res[key]
        print(f"  {label:<44} {ms(vals, 50):>8.1f} {ms(vals, 90):>8.1f} {ms(vals, 99):>8.1f} "  # type: ignore[arg-type]
              f"{ms(vals, 100):>8.1f}")  # type: ignore[arg-type]
    print("  (¹ created_at is the `now` the scheduler passed to its write of the chunk, never before the due time)")
    late = res["late"]
    if late:
        print(f"  scheduled second → first run started  {min(late):7.2f} s")  # type: ignore[type-var]
    print(f"  scheduled second → last run started   {res['last_started']:7.2f} s")
    print(f"  scheduled second → last run finished  {res['last_finished']:7.2f} s")
    if late:
        step = 0.1 if k <= 2000 else 1.0  # type: ignore[operator]
        buckets: dict[int, int] = {}
        for v in late:  # type: ignore[union-attr]
            b = int(v // step)
            buckets[b] = buckets.get(b, 0) + 1
        line = "  ".join(f"{b * step:.1f}:{buckets.get(b, 0)}" for b in range(min(buckets), max(buckets) + 1))
        print(f"  runs started per {step:g} s after the scheduled second: {line}")
    cpu = f"  daemon CPU in the window {res['cpu_daemon']:.1f} s over {res['wall']:.1f} s"
    if res["cpu_redis"] is not None:
        cpu += f", redis-server {res['cpu_redis']:.1f} s"
    print(cpu)
    print(f"  daemon threads (%core): {res['threads']}")


# -- main ---------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="active cron workflows, ascending (default 1000,10000,100000)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle CPU window per size (default 60)")
    parser.add_argument("--due", default="1000,10000", help="workflows due in the same second (default 1000,10000)")
    parser.add_argument("--lateness-at", type=int, default=10000,
                        help="run the lateness measurements after this size (default 10000; else the largest "
                             "size below it, else the first)")
    parser.add_argument("--skip-lateness", action="store_true", help="skip the lateness measurements")
    parser.add_argument("--due-timeout", type=float, default=120.0,
                        help="seconds after the scheduled second to wait for all runs to start (default 120)")
    parser.add_argument("--chunk", type=int, default=10000, help="workflows per workflows.apply (≤ 10000)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy record the daemon into DIR (collapsed stacks)")
    parser.add_argument("--profile-gil", action="store_true",
                        help="with --profile: sample only the thread holding the GIL (py-spy --gil)")
    add_common_args(parser)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    dues = [int(s) for s in args.due.split(",") if s.strip()]
    chunk = max(1, min(args.chunk, 10000))
    profile = Path(args.profile) if args.profile else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    lateness_at = None
    if not args.skip_lateness and dues:
        below = [s for s in sizes if s <= args.lateness_at]
        lateness_at = below[-1] if below else sizes[0]

    t_begin = time.monotonic()
    print(f"scheduler_scale: sizes={sizes} idle={args.idle_seconds:g}s due={dues if lateness_at else 'skipped'}"
          f"  [{describe_machine()}]", flush=True)
    rows: list[dict[str, object]] = []
    late: list[dict[str, object]] = []
    create_rate = 0.0
    with BenchDaemon.from_args(args) as nx:
        print(nx.describe(), flush=True)
        print("one daemon, grown through the sizes (1k → 10k → …); each size measured after a restart", flush=True)
        have = 0  # background workflows created so far
        for n in sizes:
            extra = n - active_scheduled(nx)  # the lateness workflows count towards the later sizes
            print(f"\n[{n} active cron workflows] creating {max(0, extra)} more "
                  f"(daily, {ZONE}, none due in the next {QUIET_MINUTES} min)", flush=True)
            if extra > 0:
                took, rate = create_all(nx, background_specs(have, extra), chunk, f"{n}")
                have += extra
                create_rate = rate
                print(f"    created {extra} in {took:.1f} s ({rate:.0f}/s)", flush=True)
            spy_dir = profile if (profile is not None and n == sizes[-1]) else None
            row = measure_size(nx, n, args.idle_seconds, spy_dir, args.profile_gil)
            rows.append(row)
            if n == lateness_at:
                print(f"\n[lateness, on this daemon with {active_scheduled(nx)} cron workflows loaded]", flush=True)
                for k in dues:
                    late.append(lateness(nx, k, create_rate, chunk, args.due_timeout, profile, args.profile_gil))
        final_counts = count_by_status(nx.db())
        database = "postgres" if nx._pg else ("sqlite" if not args.database else args.database.split(":")[0])

    # -- report ------------------------------------------------------------------------------------------
    print(f"\nscheduler at scale ({database}, one daemon grown through the sizes; "
          f"total {time.monotonic() - t_begin:.0f} s)")
    print(f"  {'workflows':>9} {'ready s':>8} {'load s':>7} {'RSS MiB':>8} {'redis MiB':>9} "
          f"{'idle CPU-s/min':>14} {'redis CPU-s/min':>15} {'heap':>7}")
    for r in rows:
        redis_rss = "n/a" if r["redis_rss"] is None else f"{r['redis_rss']:.1f}"
        redis_cpu = "n/a" if r["idle_redis"] is None else f"{r['idle_redis']:.3f}"
        load = "n/a" if r["load_s"] is None else f"{r['load_s']:.2f}"
        print(f"  {r['n']:>9} {r['ready_s']:>8.2f} {load:>7} {r['rss']:>8.1f} {redis_rss:>9} "
              f"{r['idle_daemon']:>14.3f} {redis_cpu:>15} {r['held_after']!s:>7}")
    print("  (ready = process start → system.ping answered; load = the scheduler's own load time; RSS right "
          "after start-up;\n   idle = over the idle window after start-up; heap = workflows the scheduler holds)")
    for res in late:
        print_lateness(res)
    print(f"\nrun statuses in the store at the end: {final_counts}")

    print("\ntargets")
    by_n = {r["n"]: r for r in rows}
    if TARGET_READY_AT in by_n:
        r = by_n[TARGET_READY_AT]
        print(f"  {TARGET_READY_AT} workflows ready in {r['ready_s']:.2f} s (≤ {TARGET_READY_S:g} s) "
              f"{verdict(r['ready_s'] <= TARGET_READY_S)}")  # type: ignore[operator]
    else:
        big = rows[-1]
        print(f"  {TARGET_READY_AT} workflows ready (≤ {TARGET_READY_S:g} s): not measured "
              f"(largest size {big['n']}: {big['ready_s']:.2f} s)")
    for r in rows:
        total = r["idle_daemon"] + (r["idle_redis"] or 0.0 if nx.embedded_redis else 0.0)  # type: ignore[operator]
        extra = f" + embedded redis {r['idle_redis']:.3f} = {total:.3f}" if nx.embedded_redis and \
            r["idle_redis"] is not None else ""
        print(f"  idle with {r['n']:>6}: daemon {r['idle_daemon']:.3f}{extra} CPU-s/min "
              f"(≤ {TARGET_IDLE_CPU_PER_MIN:g}) {verdict(total <= TARGET_IDLE_CPU_PER_MIN)}")  # type: ignore[operator]
    for res in late:
        k = res["k"]
        all_ran = res["ran"] == k
        if k == 1000:
            p99 = ms(res["late"], 99)  # type: ignore[arg-type]
            print(f"  {k} due together: p99 lateness {p99:.1f} ms (≤ {TARGET_P99_1K_MS:g}) "
                  f"{verdict(all_ran and p99 <= TARGET_P99_1K_MS)}"
                  + ("" if all_ran else f"  [only {res['ran']}/{k} ran]"))
        elif k == 10000:
            last = res["last_started"]
            print(f"  {k} due together: {res['ran']}/{k} ran, last started {last:.2f} s after "
                  f"(all, ≤ {TARGET_ALL_10K_S:g} s) {verdict(all_ran and last <= TARGET_ALL_10K_S)}")  # type: ignore[operator]
        else:
            print(f"  {k} due together: {res['ran']}/{k} ran, p99 {ms(res['late'], 99):.1f} ms (no target)")  # type: ignore[arg-type]
    if lateness_at is None:
        print("  lateness: skipped")
    if profile is not None:
        for r in rows:
            if r.get("idle_profile"):
                print(f"\npy-spy profile of the idle daemon with {r['n']} workflows ({r['idle_profile']}):")
                print(summarize_collapsed(r["idle_profile"]))  # type: ignore[arg-type]
        for res in late:
            if res.get("profile"):
                print(f"\npy-spy profile of the daemon while {res['k']} fired together ({res['profile']}):")
                print(summarize_collapsed(res["profile"]))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
