"""Running one registry command against the daemon: shared by the fast path and the typer app."""

from __future__ import annotations

import json
import sys
from typing import Any

from nexus_core.commands.registry import Command
from nexus_core.errors import InvalidError, NexusError

_config: dict[str, str | None] = {"file": None}


def config_file() -> str | None:
    return _config["file"]


def set_config_file(path: str | None) -> None:
    _config["file"] = path


def settings() -> Any:
    from nexus_core.config import load_settings

    return load_settings(_config["file"])


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def report_error(exc: NexusError, as_json: bool) -> int:
    """Print an error for a person (stderr) and, with --json, for a script (stdout); returns the exit code."""
    if as_json:
        print_json({"error": {"kind": exc.kind, "message": exc.message, "field": exc.field}})
    print(f"nexus: {exc.message}", file=sys.stderr)
    return exc.exit_code


def run_command(cmd: Command, args: dict[str, Any], as_json: bool) -> int:
    """Call the daemon for one command, print its answer, and return the documented exit code."""
    from nexus_core.rpc.client import connect

    try:
        for p in cmd.params:
            if p.choices and args.get(p.name) is not None and args[p.name] not in p.choices:
                raise InvalidError(f"{p.option} must be one of {', '.join(p.choices)}", field=p.name)
        params = cmd.rpc_params(args)
        with connect(settings(), quiet=as_json, autostart=cmd.autostart) as client:
            answer = client.call(cmd.method, params)
    except NexusError as exc:
        return report_error(exc, as_json)
    if as_json:
        print_json(answer)
    elif cmd.render is not None:
        from rich.console import Console

        Console(soft_wrap=False).print(cmd.render(answer))
    return cmd.outcome(answer) if cmd.outcome else 0
