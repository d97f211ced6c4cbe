"""auto:* commands: workflows and their runs."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from nexus_core.commands.registry import Command, Param, command
from nexus_core.errors import InvalidError


def _r() -> Any:
    from nexus_core.commands import render

    return render


NAME = Param("name", "workflow name", positional=True, required=True, complete="workflow")
SPEC_OPTIONS = (
    Param("cron", "cron expression: 5 fields, or 6 with seconds last, or @hourly/@daily/…"),
    Param("tz", "IANA time zone of the cron expression or --at time, e.g. Europe/Berlin"),
    Param("at", "run once at this ISO time, e.g. 2026-12-01T09:00 (read in --tz)"),
    Param("payload", "JSON object handed to the kind, e.g. '{\"url\": \"https://…\"}'"),
    Param("retries", "retries after a failed attempt (default 2, so 3 attempts)", type=int),
    Param("backoff", "seconds before the first retry, doubling after each (default 1)", type=float),
    Param("timeout", "seconds one attempt may take (default 600)", type=float),
    Param("description", "what this workflow is for"),
    Param("requires_approval", "ask for confirmation before triggering from the TUI", type=bool),
    Param("misfire", "fires missed by more than --grace (daemon down, paused): skip (default), once "
                     "(one catch-up run) or all (each, at most --max-catchup)", choices=("skip", "once", "all")),
    Param("max_catchup", "with --misfire all: at most this many catch-up runs (default 10)", type=int),
    Param("grace", "seconds a fire may be late and still count as on time (default 60)", type=float),
    Param("overlap", "a fire while the previous run still runs: skip (default), queue or allow",
          choices=("skip", "queue", "allow")),
)
_SPEC_KEYS = {"tz": "timezone"}


def _spec(args: dict[str, Any], *, with_name: bool) -> dict[str, Any]:
    # A flag not given is False, not "unset": sending it would clear requires_approval on every auto:edit.
    spec = {_SPEC_KEYS.get(k, k): v for k, v in args.items() if v is not None and v is not False and k != "name"}
    if with_name:
        spec["name"] = args["name"]
    return spec


command(Command(
    "auto:list", "List workflows with their schedule, next fire and last run.", "workflows.list",
    (Param("status", "only workflows with this status", choices=("active", "paused", "error", "scheduled",
                                                                  "completed")),),
    render=lambda r: _r().workflows(r)))
command(Command("auto:show", "Show one workflow's definition and recent runs.", "workflows.get", (NAME,),
                render=lambda r: _r().workflow(r)))
command(Command(
    "auto:create", "Create a workflow.", "workflows.create",
    (Param("name", "workflow name", positional=True, required=True),
     Param("kind", "what it does: noop, webhook, command, …", required=True, complete="kind"), *SPEC_OPTIONS),
    build=lambda a: _spec(a, with_name=True), render=lambda r: _r().workflow(r), mutating=True,
    examples=("nexus auto:create daily-report --kind noop --cron '0 8 * * *' --tz Europe/Berlin",)))
command(Command(
    "auto:edit", "Change fields of a workflow; only the options given change.", "workflows.update",
    (NAME, Param("kind", "what it does", complete="kind"), *SPEC_OPTIONS),
    build=lambda a: {"name": a["name"], "changes": _spec(a, with_name=False)}, render=lambda r: _r().workflow(r),
    mutating=True))
command(Command("auto:delete", "Delete a workflow; its run history is kept.", "workflows.delete", (NAME,),
                render=lambda r: _r().message(f"deleted {r['name']}"
                                              + (f"; closed {r['cancelled_runs']} runs that had not started"
                                                 if r["cancelled_runs"] else "")), mutating=True))
YES = Param("yes", "confirm a workflow that requires approval", type=bool)


def _trigger_params(args: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in args.items() if v is not None and k != "yes"}
    if args.get("yes"):
        out["confirm"] = True
    return out


def _names(args: dict[str, Any]) -> dict[str, Any]:
    names = [n.strip() for n in (args.get("names") or "").split(",") if n.strip()]
    if not names:
        raise InvalidError("give the workflow names, comma-separated, e.g. nightly,backup", field="names")
    return {"action": args["action"], "names": names}


command(Command(
    "auto:trigger", "Run a workflow now.", "workflows.trigger",
    (NAME, Param("wait", "wait until the run has finished and show its outcome", type=bool),
     Param("wait_timeout", "give up waiting after this many seconds", type=float), YES),
    build=_trigger_params,
    render=lambda r: _r().run(r) if r.get("finished_at") or r.get("wait_timed_out")
    else _r().message(f"triggered {r['workflow']}: run {r['id']} is {r['status']}"),
    outcome=lambda r: 1 if r.get("status") in ("failed", "dead") else 0, mutating=True,
    examples=("nexus auto:trigger daily-report --wait", "nexus auto:trigger invoices --yes")))
command(Command(
    "auto:rerun", "Run a failed or dead run's workflow again, as a new manual run.", "runs.rerun",
    (Param("id", "run id (or a unique prefix) of a failed or dead run", positional=True, required=True), YES),
    build=_trigger_params,
    render=lambda r: _r().message(f"re-ran {r['workflow']}: run {r['id']} is {r['status']} "
                                  f"(re-run of {r['rerun_of']})"), mutating=True))
command(Command(
    "auto:bulk", "God mode: trigger, pause, resume or delete many workflows; each on its own.", "workflows.bulk",
    (Param("action", "what to do with each workflow", positional=True, required=True,
           choices=("trigger", "pause", "resume", "delete")),
     Param("names", "workflow names, comma-separated", positional=True, required=True)),
    build=_names, render=lambda r: _r().bulk(r), outcome=lambda r: 1 if r.get("failed") else 0, mutating=True,
    examples=("nexus auto:bulk pause nightly,backup,report",)))
command(Command("auto:pause", "Pause a workflow's schedule.", "workflows.pause", (NAME,),
                render=lambda r: _r().message(f"{r['name']} is {r['status']}"), mutating=True))
command(Command("auto:resume", "Resume a paused workflow.", "workflows.resume", (NAME,),
                render=lambda r: _r().message(f"{r['name']} is {r['status']}"
                                              + (f"; {r['notice']}" if r.get("notice") else "")), mutating=True))
command(Command("auto:next", "The next fire times of a workflow's schedule.", "workflows.next",
                (NAME, Param("count", "how many (default 5, at most 100)", type=int)),
                render=lambda r: _r().next_fires(r)))
command(Command("auto:logs", "A workflow's runs, newest first.", "runs.list",
                (Param("name", "workflow name", positional=True, required=True, complete="workflow"),
                 Param("limit", "how many runs", type=int)),
                build=lambda a: {"workflow": a["name"], **({"limit": a["limit"]} if a.get("limit") else {})},
                render=lambda r: _r().runs(r["runs"])))
command(Command("auto:run", "One run with every attempt, its output and error.", "runs.get",
                (Param("id", "run id (or a unique prefix)", positional=True, required=True),),
                render=lambda r: _r().run(r)))
command(Command("auto:stats", "Counts of workflows and of executions (runs) by outcome.", "workflows.stats",
                render=lambda r: _r().stats(r)))


def _read_workflows_file(args: dict[str, Any]) -> dict[str, Any]:
    path = Path(args["file"])
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidError(f"{path} does not exist", field="file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidError(f"{path} is not valid TOML: {exc}", field="file") from None
    except OSError as exc:
        raise InvalidError(f"cannot read {path}: {exc.strerror}", field="file") from None
    entries = data.get("workflow")
    if not isinstance(entries, list) or not entries:
        raise InvalidError(f"{path} defines no [[workflow]] tables; see config/workflows.example.toml",
                           field="file")
    return {"workflows": [{_SPEC_KEYS.get(k, k): v for k, v in e.items()} for e in entries]}


command(Command(
    "auto:apply", "Create or update workflows from a TOML file; all or nothing.", "workflows.apply",
    (Param("file", "TOML file with [[workflow]] tables", positional=True, required=True),),
    build=_read_workflows_file,
    render=lambda r: _r().message("; ".join(f"{k}: {', '.join(v)}" for k, v in r.items() if v) or "nothing to do"),
    mutating=True))
