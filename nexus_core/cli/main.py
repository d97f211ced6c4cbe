"""`nexus`: every registry command as a one-shot CLI command, plus daemon, worker and db:upgrade."""

from __future__ import annotations

import inspect
import json
import os
import sys
from typing import Any, Optional

import typer

from nexus_core.commands.registry import Command, all_commands
from nexus_core.errors import InvalidError, NexusError

app = typer.Typer(add_completion=False, no_args_is_help=False, rich_markup_mode=None,
                  help="Nexus: operations command center. Without a command: a status summary.",
                  context_settings={"help_option_names": ["-h", "--help"]})
_config: dict[str, str | None] = {"file": None}


def _settings() -> Any:
    from nexus_core.config import load_settings

    return load_settings(_config["file"])


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def _fail(exc: NexusError, as_json: bool) -> None:
    if as_json:
        _print_json({"error": {"kind": exc.kind, "message": exc.message, "field": exc.field}})
    print(f"nexus: {exc.message}", file=sys.stderr)
    raise typer.Exit(exc.exit_code)


def run_command(cmd: Command, args: dict[str, Any], as_json: bool) -> None:
    """Call the daemon for one command and print its answer; exits with the documented code."""
    from nexus_core.rpc.client import connect

    try:
        for p in cmd.params:
            if p.choices and args.get(p.name) is not None and args[p.name] not in p.choices:
                raise InvalidError(f"{p.option} must be one of {', '.join(p.choices)}", field=p.name)
        params = cmd.rpc_params(args)
        with connect(_settings(), quiet=as_json) as client:
            answer = client.call(cmd.method, params)
    except NexusError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        _print_json(answer)
    elif cmd.render is not None:
        from rich.console import Console

        Console(soft_wrap=False).print(cmd.render(answer))
    code = cmd.outcome(answer) if cmd.outcome else 0
    if code:
        raise typer.Exit(code)


def _register(cmd: Command) -> None:
    parameters = []
    for p in cmd.params:
        if p.type is bool:
            default: Any = typer.Option(False, p.option, help=p.help)
            annotation: Any = bool
        elif p.positional:
            default = typer.Argument(... if p.required else None, help=p.help, show_default=False)
            annotation = p.type if p.required else Optional[p.type]
        else:
            default = typer.Option(... if p.required else None, p.option, help=p.help, show_default=False)
            annotation = p.type if p.required else Optional[p.type]
        parameters.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=annotation))
    parameters.append(inspect.Parameter("json_", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                        default=typer.Option(False, "--json", help="print the answer as JSON")))

    def handler(**kwargs: Any) -> None:
        as_json = kwargs.pop("json_")
        run_command(cmd, kwargs, as_json)

    handler.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    epilog = "Examples:  " + "  ".join(cmd.examples) if cmd.examples else None
    app.command(cmd.name, help=cmd.help, epilog=epilog)(handler)


for _cmd in all_commands().values():
    _register(_cmd)

_PASS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _exec_daemon(role: str, extra: list[str]) -> None:
    # Exec, not import: the CLI never loads the daemon's code, and the daemon gets a clean process.
    argv = [sys.executable, "-m", "nexus_daemon", role, *extra]
    if _config["file"]:
        argv += ["--config", _config["file"]]
    os.execv(sys.executable, argv)


@app.command("daemon", context_settings=_PASS, help="Run the daemon in the foreground (structured logs to stderr).")
def daemon_cmd(ctx: typer.Context) -> None:
    _exec_daemon("daemon", ctx.args)


@app.command("worker", context_settings=_PASS, help="Run Dramatiq workers only, for extra hosts.")
def worker_cmd(ctx: typer.Context) -> None:
    _exec_daemon("worker", ctx.args)


@app.command("db:upgrade", help="Apply database migrations (the daemon also does this when it starts).")
def db_upgrade() -> None:
    from nexus_core.config import redact_url
    from nexus_core.store import migrate
    from nexus_core.store.db import Store

    try:
        settings = _settings()
        store = Store(settings.effective_database_url)
        changed = migrate.upgrade(store.engine)
        store.close()
    except NexusError as exc:
        _fail(exc, False)
        return
    except Exception as exc:  # noqa: BLE001 - migration errors come from the driver
        print(f"nexus: migrating failed: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"{redact_url(store.url)}: {'migrated to the newest schema' if changed else 'already up to date'}")


@app.command("version", help="Print the version.")
def version_cmd() -> None:
    from nexus_core import __version__

    print(__version__)


def status_summary() -> int:
    """`nexus` with no command: the daemon's health and the workflows on one screen."""
    from rich.console import Console
    from rich.text import Text

    from nexus_core.commands import render
    from nexus_core.rpc.client import connect

    console = Console()
    try:
        with connect(_settings()) as client:
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
        _config["file"] = args[i + 1]
        del args[i:i + 2]
    if not args:
        sys.exit(status_summary())
    app(args=args, prog_name="nexus")


if __name__ == "__main__":
    main()
