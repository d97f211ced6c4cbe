"""Readings of a process from /proc (CPU, threads, memory) and py-spy profiles, for the benchmarks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _py_spy() -> str | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return exe if os.path.exists(exe) else None


# -- CPU ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime+stime of one process (all its threads), in seconds, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int | None) -> float | None:
    """Resident memory (VmRSS from /proc/PID/status) in MiB, or None when unreadable."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def thread_cpu(pid: int) -> dict[int, float]:
    """Per-thread id -> utime+stime seconds."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def thread_runtime(pid: int) -> dict[int, float]:
    """Per-thread id -> seconds on CPU, from /proc/PID/task/TID/schedstat (nanoseconds, so small amounts of
    CPU spread over many threads are not lost to whole clock ticks as in thread_cpu)."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, via `py-spy dump --json` when py-spy is installed (else {})."""
    exe = _py_spy()
    if exe is None:
        return {}
    try:
        done = subprocess.run([exe, "dump", "--pid", str(pid), "--json", "--nonblocking"], capture_output=True,
                              text=True, timeout=20)
        return {int(t["os_thread_id"]): t.get("thread_name") or "?" for t in json.loads(done.stdout)
                if t.get("os_thread_id")}
    except Exception:  # noqa: BLE001 - names are a nicety
        return {}


def busiest_threads(pid: int, before: dict[int, float], after: dict[int, float], wall: float,
                    top: int = 6) -> str:
    """The threads that used the most CPU between two thread_cpu readings, as '% of one core' text."""
    names = thread_names(pid)
    used = sorted(((after[t] - before.get(t, 0.0)) / wall * 100, t) for t in after)[::-1][:top]
    return ", ".join(f"{names.get(t, f'tid {t}')}={v:.2f}" for v, t in used)


# -- profiling the daemon with py-spy ------------------------------------------------------------


class PySpy:
    """`py-spy record` on a pid while a benchmark runs, writing collapsed stacks (one line per stack: count)."""

    def __init__(self, pid: int, path: Path | str, rate: int = 200, idle: bool = False, gil: bool = False):
        exe = _py_spy()
        if exe is None:
            raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
        self.path = Path(path)
        cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--threads",
               "--nonblocking", "--output", str(self.path), "--duration", "3600"]
        if idle:
            cmd.append("--idle")
        if gil:
            cmd.append("--gil")  # only samples of the thread holding the GIL: where the CPU of Python code goes
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # attach before the measured work starts

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait()


def summarize_collapsed(path: Path | str, top: int = 15) -> str:
    """Threads, self-time leaves and inclusive frames of a py-spy raw (collapsed) profile, as text."""
    from collections import Counter

    per_thread: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue  # a line py-spy cut short when it was stopped
        count = int(count_text)
        frames = stack.split(";")
        total += count
        per_thread[frames[0]] += count
        leaves[frames[-1]] += count
        for frame in set(frames[1:]):
            inclusive[frame] += count
    if not total:
        return "(no samples)"
    out = [f"{total} samples"]
    out.append("by thread:")
    out += [f"  {c / total * 100:5.1f}%  {t}" for t, c in per_thread.most_common(top)]
    out.append("self (leaf frame):")
    out += [f"  {c / total * 100:5.1f}%  {f}" for f, c in leaves.most_common(top)]
    out.append("inclusive:")
    out += [f"  {c / total * 100:5.1f}%  {f}" for f, c in inclusive.most_common(top * 2)]
    return "\n".join(out)
