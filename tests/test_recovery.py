"""Nothing lost: SIGKILL a real daemon while runs are queued and running, start it again, and every run ends.

Each run is a `command` that appends "start RUN ATTEMPT TIME" to a log file, sleeps, then appends "end ...",
so the tests can count how often each attempt of each run really executed.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from nexus_core.testing import DaemonProcess

REDIS_URL = os.environ.get("NEXUS_TEST_REDIS_URL")
BROKERS = ["embedded"] + (["external"] if REDIS_URL else [])
FINAL = ("succeeded", "failed", "dead")
WORKFLOW = "recov"
#: Below Dramatiq's own 60 s heartbeat timeout on purpose: its maintenance must not be what saves a run.
SETTLE_DEADLINE = 45.0
THREADS = {"NEXUS_WORKER_THREADS": "2"}


@pytest.fixture(params=BROKERS)
def broker_kw(request: pytest.FixtureRequest) -> dict[str, str]:
    """DaemonProcess arguments for each broker set-up: embedded Redis, and the external one when configured."""
    if request.param == "external":
        return {"redis_url": REDIS_URL or "", "redis_namespace": f"nxt{uuid.uuid4().hex[:10]}"}
    return {}


def redis_of(home: Path, broker_kw: dict[str, str]) -> tuple[redis.Redis, str]:
    """A client for the Redis the daemon uses, and its namespace."""
    if broker_kw.get("redis_url"):
        return redis.Redis.from_url(broker_kw["redis_url"]), broker_kw["redis_namespace"]
    return redis.Redis(unix_socket_path=str(home / "redis" / "redis.sock")), "nexus"


def create_workflow(daemon: DaemonProcess, log: Path, sleep: float) -> None:
    stamp = f'"$NEXUS_RUN_ID $NEXUS_ATTEMPT $(date +%s.%N)" >> {log}'
    daemon.call("workflows.create", {
        "name": WORKFLOW, "kind": "command", "retries": 3, "backoff": 0.1, "timeout": 60,
        "payload": {"argv": ["sh", "-c", f"echo start {stamp}; sleep {sleep}; echo end {stamp}"]}})


def trigger(daemon: DaemonProcess, count: int) -> list[str]:
    return [daemon.call("workflows.trigger", {"name": WORKFLOW})["id"] for _ in range(count)]


def executions(log: Path) -> list[tuple[str, str, int, float]]:
    """(start|end, run id, attempt, unix time) per line the commands wrote."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        what, run_id, attempt, at = line.split()
        out.append((what, run_id, int(attempt), float(at)))
    return out


def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def wait_final(daemon: DaemonProcess, ids: list[str], timeout: float = SETTLE_DEADLINE) -> dict[str, dict[str, Any]]:
    """Poll runs.get until every run is final; on time-out, fail naming the runs still open."""
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    with daemon.client() as client:
        while True:
            for run_id in ids:
                if run_id not in done:
                    run = client.call("runs.get", {"id": run_id})
                    if run["status"] in FINAL:
                        done[run_id] = run
            if len(done) == len(ids):
                return done
            if time.monotonic() > deadline:
                open_runs = {r: client.call("runs.get", {"id": r})["status"] for r in ids if r not in done}
                raise AssertionError(f"runs not final after {timeout:g}s (queued or running forever?): {open_runs}\n"
                                     f"health: {client.call('system.health')}\n{daemon.log()[-3000:]}")
            time.sleep(0.2)


def log_events(daemon: DaemonProcess, event: str, since: int = 0) -> list[dict[str, Any]]:
    found = []
    for line in daemon.log()[since:].splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == event:
            found.append(entry)
    return found


def assert_ran_once_each(runs: dict[str, dict[str, Any]], log: Path) -> None:
    """Every run succeeded once: one successful attempt, its one execution, and nothing started after it."""
    starts = Counter((run_id, attempt) for what, run_id, attempt, _ in executions(log) if what == "start")
    ends = Counter((run_id, attempt) for what, run_id, attempt, _ in executions(log) if what == "end")
    assert set(run_id for run_id, _ in starts) == set(runs), "every run executed, and nothing else did"
    twice = {key: n for key, n in starts.items() if n > 1}
    assert not twice, f"attempts executed more than once: {twice}"
    for run_id, run in runs.items():
        assert run["status"] == "succeeded", run
        attempts = run["attempts"]
        assert [a["attempt"] for a in attempts] == list(range(1, run["attempt"] + 1)), run
        assert [a["status"] for a in attempts] == ["failed"] * (len(attempts) - 1) + ["succeeded"], run
        for earlier in attempts[:-1]:
            # The only failure these commands have is the daemon being killed under them.
            assert "interrupted" in earlier["error"], earlier
        won = run["attempt"]
        assert starts[(run_id, won)] == 1 and ends[(run_id, won)] == 1, (run_id, won, starts, ends)
        # No execution of this run started after its success was recorded.
        finished = datetime.fromisoformat(run["finished_at"]).timestamp()
        late = [(a, at) for what, r, a, at in executions(log) if r == run_id and what == "start" and at > finished]
        assert not late, f"run {run_id} executed again after it succeeded at {run['finished_at']}: {late}"
        assert all(a <= won for (r, a) in starts if r == run_id), (run_id, starts)


def test_sigkill_with_runs_queued_and_running_loses_nothing_and_runs_nothing_twice(
        make_daemon, database_url, broker_kw, home) -> None:  # type: ignore[no-untyped-def]
    log = home / "executions"
    daemon = make_daemon(database_url=database_url, env=THREADS, **broker_kw).start()
    create_workflow(daemon, log, sleep=1.5)
    ids = trigger(daemon, 8)
    # Two threads: two runs execute, two more sit prefetched in this consumer, the rest wait in Redis.
    wait_for("two runs to be executing", lambda: len(executions(log)) >= 2, 20)
    daemon.kill()
    at_kill = executions(log)
    assert {what for what, *_ in at_kill} == {"start"}, "nothing finished yet: the kill hits runs mid-execution"

    since = len(daemon.log())
    daemon.start()
    runs = wait_final(daemon, ids)

    assert_ran_once_each(runs, log)
    interrupted = {run_id for run_id, run in runs.items() if len(run["attempts"]) > 1}
    # The runs executing at the kill were interrupted and retried, not left `running`.
    assert {run_id for _, run_id, _, _ in at_kill} == interrupted
    assert all(runs[r]["attempts"][0]["worker"] != runs[r]["attempts"][1]["worker"] for r in interrupted)
    [recovered] = log_events(daemon, "recovered runs", since)
    assert recovered["interrupted"] == len(interrupted)
    # What the dead consumer had fetched (at least the executing runs' messages, and those it had prefetched)
    # went back on the queue at once instead of after Dramatiq's heartbeat timeout; the stale copies of the
    # interrupted attempts were delivered, found nothing to claim and were acked: Redis ends up empty.
    assert recovered["requeued"] >= len(interrupted), recovered
    wait_for("Redis to hold no messages",
             lambda: all(not any(q.values()) for q in daemon.call("system.health")["queues"].values()), 10)


def test_runs_whose_message_never_reached_redis_are_sent_at_restart(make_daemon, broker_kw, home) -> None:  # type: ignore[no-untyped-def]
    """A kill between committing a run and its message reaching Redis: startup recovery sends it."""
    log = home / "executions"
    daemon = make_daemon(env=THREADS, **broker_kw).start("--no-workers")
    create_workflow(daemon, log, sleep=0.1)
    ids = trigger(daemon, 4)
    wait_for("the messages to reach Redis",
             lambda: daemon.call("system.health")["queues"]["automation"]["ready"] == 4, 10)
    daemon.kill()
    # The state the kill leaves when it lands after the commit but before the send: no message for these runs.
    client, ns = redis_of(home, broker_kw)
    lost = ids[:2]
    with client:
        for field in client.hkeys(f"{ns}:automation.msgs"):
            if field.decode().split(".")[0] in lost:
                client.hdel(f"{ns}:automation.msgs", field)
                client.lrem(f"{ns}:automation", 0, field)
        assert client.llen(f"{ns}:automation") == 2

    since = len(daemon.log())
    daemon.start()
    runs = wait_final(daemon, ids)

    assert_ran_once_each(runs, log)
    assert all(len(run["attempts"]) == 1 for run in runs.values())
    [recovered] = log_events(daemon, "recovered runs", since)
    assert (recovered["resent"], recovered["interrupted"]) == (2, 0), recovered


def test_restarted_daemon_adopts_the_embedded_redis_with_its_queued_messages(make_daemon, home) -> None:  # type: ignore[no-untyped-def]
    log = home / "executions"
    daemon = make_daemon(env=THREADS).start("--no-workers")
    create_workflow(daemon, log, sleep=0.1)
    ids = trigger(daemon, 3)
    wait_for("the messages to reach Redis",
             lambda: daemon.call("system.health")["queues"]["automation"]["ready"] == 3, 10)
    pidfile = home / "redis" / "redis.pid"
    redis_pid = int(pidfile.read_text())
    daemon.kill()

    os.kill(redis_pid, 0)  # the daemon's SIGKILL did not take its Redis down
    client, ns = redis_of(home, {})
    with client:
        assert client.llen(f"{ns}:automation") == 3

    since = len(daemon.log())
    daemon.start()
    assert int(pidfile.read_text()) == redis_pid
    [adopted] = log_events(daemon, "adopted running embedded redis", since)
    assert adopted["pid"] == redis_pid
    runs = wait_final(daemon, ids)

    assert_ran_once_each(runs, log)
    assert all(len(run["attempts"]) == 1 for run in runs.values())
    # The messages were still in Redis: nothing had to be resent.
    assert not log_events(daemon, "recovered runs", since)
    assert daemon.call("system.health")["redis"]["embedded"] is True
