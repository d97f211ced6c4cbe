"""`nexus`: registry commands parsed straight from the registry; help, usage errors and the rest via typer."""

from __future__ import annotations

import sys
from typing import Any

from nexus_core.cli.run import run_command, set_config_file, settings
from nexus_core.commands.parse import parse_args
from nexus_core.commands.registry import Command, all_commands
from nexus_core.errors import InvalidError, NexusError


def fast_parse(cmd: Command, argv: list[str]) -> tuple[dict[str, Any], bool] | None:
    """Parse a well-formed command line from the registry alone, or None to let typer explain the problem.

    typer 0.29 builds a pydantic TypeAdapter for every parameter it parses, which costs ~100 ms
    on each one-shot call; the registry already knows every parameter, so this is all it takes.
    """
    try:
        return parse_args(cmd, argv)
    except InvalidError:
        return None


def status_summary() -> int:
    """`nexus` with no command and no terminal (piped, cron): the daemon's health and the workflows as text."""
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
    console.print(Text("Run `nexus` in a terminal for the live dashboard; commands: nexus --help", style="dim"))
    return 0


def launch_tui() -> int:
    """`nexus` in a terminal: the full-screen TUI, after starting a background daemon when that is ours to do."""
    from nexus_core.errors import DaemonUnreachableError
    from nexus_core.rpc.client import Client, start_background_daemon

    try:
        current = settings()
    except NexusError as exc:
        print(f"nexus: {exc.message}", file=sys.stderr)
        return exc.exit_code
    notice = None
    try:
        Client(current.socket_path, timeout=5).close()
    except DaemonUnreachableError as exc:
        if current.embedded and "permission denied" not in exc.message:
            try:
                pid = start_background_daemon(current)
            except NexusError as start_exc:
                print(f"nexus: {start_exc.message}", file=sys.stderr)
                return start_exc.exit_code
            notice = f"No daemon was running; started one in the background (pid {pid}, log {current.log_path})."
    except NexusError:
        pass  # refused or misconfigured: the TUI shows the daemon's own message and keeps retrying
    from nexus_tui.app import run

    starter = (lambda: start_background_daemon(current)) if current.embedded else None
    return run(current.socket_path, notice=notice, starter=starter)


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
        sys.exit(launch_tui() if sys.stdin.isatty() and sys.stdout.isatty() else status_summary())
    cmd = all_commands().get(args[0])
    parsed = fast_parse(cmd, args[1:]) if cmd is not None else None
    if parsed is not None:
        assert cmd is not None
        sys.exit(run_command(cmd, *parsed))
    from nexus_core.cli.app import app

    app(args=args, prog_name="nexus")


if __name__ == "__main__":
    main()
