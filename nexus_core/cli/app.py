"""The typer app: every registry command as a one-shot CLI command, plus daemon, worker and db:upgrade."""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any, Optional

import typer

from nexus_core.cli.run import config_file, report_error, run_command, settings
from nexus_core.commands.registry import Command, all_commands
from nexus_core.errors import NexusError

app = typer.Typer(add_completion=False, no_args_is_help=False, rich_markup_mode=None,
                  help="Nexus: operations command center. Without a command: the live dashboard (a status summary when not on a terminal).",
                  context_settings={"help_option_names": ["-h", "--help"]})
def _fail(exc: NexusError, as_json: bool) -> None:
    raise typer.Exit(report_error(exc, as_json))


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
        code = run_command(cmd, kwargs, as_json)
        if code:
            raise typer.Exit(code)

    handler.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    epilog = "Examples:  " + "  ".join(cmd.examples) if cmd.examples else None
    app.command(cmd.name, help=cmd.help, epilog=epilog)(handler)


for _cmd in all_commands().values():
    _register(_cmd)

_PASS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _exec_daemon(role: str, extra: list[str]) -> None:
    # Exec, not import: the CLI never loads the daemon's code, and the daemon gets a clean process.
    argv = [sys.executable, "-m", "nexus_daemon", role, *extra]
    if config_file():
        argv += ["--config", config_file()]
    os.execv(sys.executable, argv)


@app.command("daemon", context_settings=_PASS, help="Run the daemon in the foreground (structured logs to stderr).")
def daemon_cmd(ctx: typer.Context) -> None:
    _exec_daemon("daemon", ctx.args)


@app.command("worker", context_settings=_PASS, help="Run Dramatiq workers only, for extra hosts.")
def worker_cmd(ctx: typer.Context) -> None:
    _exec_daemon("worker", ctx.args)


@app.command("db:upgrade", help="Apply database migrations (the daemon also does this when it starts).")
def db_upgrade() -> None:
    from nexus_core.redact import redact_url
    from nexus_core.store import migrate
    from nexus_core.store.db import Store

    try:
        store = Store(settings().effective_database_url)
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


