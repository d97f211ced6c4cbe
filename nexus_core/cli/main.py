"""`nexus`: registry commands parsed straight from the registry; help, usage errors and the rest via typer."""

from __future__ import annotations

import sys
from typing import Any

from nexus_core.cli.run import run_command, set_config_file, settings
from nexus_core.commands.registry import Command, all_commands
from nexus_core.errors import NexusError


def fast_parse(cmd: Command, argv: list[str]) -> tuple[dict[str, Any], bool] | None:
    """Parse a well-formed command line from the registry alone, or None to let typer explain the problem.

    typer 0.29 builds a pydantic TypeAdapter for every parameter it parses, which costs ~100 ms
    on each one-shot call; the registry already knows every parameter, so this is all it takes.
    """
    options = {p.option: p for p in cmd.params if not p.positional}
    positionals = [p for p in cmd.params if p.positional]
    args: dict[str, Any] = {p.name: (False if p.type is bool else None) for p in cmd.params}
    as_json = False
    seen_positional = 0
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--json":
            as_json = True
        elif token.startswith("-") and token != "-":
            name, eq, inline = token.partition("=")
            param = options.get(name)
            if param is None:
                return None
            if param.type is bool:
                if eq:
                    return None
                args[param.name] = True
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        return None
                    inline = argv[i]
                try:
                    args[param.name] = param.type(inline)
                except ValueError:
                    return None
        else:
            if seen_positional >= len(positionals):
                return None
            args[positionals[seen_positional].name] = token
            seen_positional += 1
        i += 1
    if any(p.required and args[p.name] in (None, False) for p in cmd.params if p.type is not bool):
        return None
    return args, as_json


def status_summary() -> int:
    """`nexus` with no command: the daemon's health and the workflows on one screen."""
    from rich.console import Console
    from rich.text import Text

    from nexus_core.commands import render
    from nexus_core.rpc.client import connect

    console = Console()
    try:
        with connect(settings()) as client:
            health = client.call("system.health")
            workflows = client.call("workflows.list")
            who = client.hello["operator"]
    except NexusError as exc:
        print(f"nexus: {exc.message}", file=sys.stderr)
        return exc.exit_code
    console.print(Text(f"Nexus {health['version']} — {who['name']} ({who['role']}, {who['organization']})",
                       style="bold"))
    console.print(render.health(health))
    console.print()
    console.print(render.workflows(workflows))
    console.print()
    console.print(Text("The full-screen dashboard is not built yet. Commands: nexus --help", style="dim"))
    return 0


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args):
            print("nexus: --config needs a file", file=sys.stderr)
            sys.exit(2)
        set_config_file(args[i + 1])
        del args[i:i + 2]
    if not args:
        sys.exit(status_summary())
    cmd = all_commands().get(args[0])
    parsed = fast_parse(cmd, args[1:]) if cmd is not None else None
    if parsed is not None:
        assert cmd is not None
        sys.exit(run_command(cmd, *parsed))
    from nexus_core.cli.app import app

    app(args=args, prog_name="nexus")


if __name__ == "__main__":
    main()
