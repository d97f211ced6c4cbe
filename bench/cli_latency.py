"""Wall time of the one-shot CLI `nexus auto:list --json` against a daemon holding 1,000 workflows.

    .venv/bin/python bench/cli_latency.py [--workflows N] [--repeat R] [--nexus PATH] [--database URL] [--redis URL]

Creates N `noop` workflows with one `workflows.apply` call, then runs `.venv/bin/nexus auto:list --json`
(the installed entry script, as users run it) R times as a subprocess with the daemon's environment and
reports the median and p90.  For reference it also times `python -c pass`, the CLI's imports alone, and the
`workflows.list` call itself over an open connection (the daemon's share).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _nexus import BenchDaemon, add_common_args, describe_machine
from _baseline import percentile

TARGET_MS = 150.0
PYTHON = sys.executable


def time_command(cmd: list[str], env: dict[str, str], repeat: int, warmup: int = 2,
                 check_json: int | None = None) -> list[float]:
    """Seconds each run of cmd took (wall clock, spawn to exit)."""
    out = []
    for i in range(warmup + repeat):
        t = time.perf_counter()
        done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True)
        took = time.perf_counter() - t
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr.decode()[-2000:]}")
        if check_json is not None and i == 0:
            listed = json.loads(done.stdout)
            if len(listed) != check_json:
                raise SystemExit(f"{' '.join(cmd)} listed {len(listed)} workflows, expected {check_json}")
        if i >= warmup:
            out.append(took)
    return out


def row(label: str, values: list[float]) -> None:
    ms = [v * 1000 for v in values]
    print(f"{label:<52} {statistics.median(ms):>9.1f} {percentile(ms, 90):>9.1f} {min(ms):>9.1f} {max(ms):>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflows", type=int, default=1000, help="workflows to create (default 1000)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of each command (default 20)")
    parser.add_argument("--nexus", default=str(Path(PYTHON).parent / "nexus"),
                        help="the nexus entry script (default: the venv's)")
    add_common_args(parser)
    args = parser.parse_args()
    if not Path(args.nexus).exists():
        raise SystemExit(f"{args.nexus} does not exist; pip install -e . into the venv, or pass --nexus")

    print(f"cli_latency: workflows={args.workflows} repeat={args.repeat} nexus={args.nexus}  "
          f"[{describe_machine()}]", flush=True)
    with BenchDaemon.from_args(args) as nx:
        print(nx.describe(), flush=True)
        specs = [{"name": f"bench-{i:05d}", "kind": "noop", "description": f"benchmark workflow {i}"}
                 for i in range(args.workflows)]
        t = time.perf_counter()
        with nx.rpc() as c:
            result = c.call("workflows.apply", {"workflows": specs})
        print(f"  created {len(result['created'])} workflows with one workflows.apply in "
              f"{time.perf_counter() - t:.2f}s", flush=True)
        env = nx.env

        results: dict[str, list[float]] = {}
        results["python -c pass"] = time_command([PYTHON, "-c", "pass"], env, args.repeat)
        results["python -c 'import <what nexus auto:list imports>'"] = time_command(
            [PYTHON, "-c", "import nexus_core.cli.main, nexus_core.rpc.client, nexus_core.config"], env, args.repeat)
        results[f"{Path(args.nexus).name} auto:list --json"] = time_command(
            [args.nexus, "auto:list", "--json"], env, args.repeat, check_json=args.workflows)
        results["python -m nexus_core.cli.main auto:list --json"] = time_command(
            [PYTHON, "-m", "nexus_core.cli.main", "auto:list", "--json"], env, args.repeat)

        # The daemon's share: the call alone on an open connection (no process start, no imports).
        rpc_times, conn_times = [], []
        for i in range(args.repeat + 2):
            t = time.perf_counter()
            with nx.rpc() as c:
                t1 = time.perf_counter()
                listed = c.call("workflows.list")
                t2 = time.perf_counter()
            if i >= 2:
                conn_times.append(t1 - t)
                rpc_times.append(t2 - t1)
        assert len(listed) == args.workflows
        size = len(json.dumps(listed))

    print(f"\n{'':<52} {'median':>9} {'p90':>9} {'min':>9} {'max':>9}   (ms, {args.repeat} runs each)")
    for label, values in results.items():
        row(label, values)
    row("  in-process: connect + system.handshake", conn_times)
    row(f"  in-process: workflows.list ({args.workflows} rows, {size // 1024} KiB JSON)", rpc_times)
    cli = results[f"{Path(args.nexus).name} auto:list --json"]
    median = statistics.median(cli) * 1000
    print(f"\ntarget: nexus auto:list --json median ≤ {TARGET_MS:g} ms: {median:.1f} ms "
          f"{'ok' if median <= TARGET_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
