"""One registry of commands: it drives the one-shot CLI now and the TUI's `:` line and help later."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Param:
    """One argument of a command: positional, or an option `--flag`."""

    name: str
    help: str
    type: type = str
    positional: bool = False
    required: bool = False
    choices: tuple[str, ...] = ()
    default: Any = None
    flag: str | None = None
    complete: str | None = None
    """What tab completion offers: "workflow" for workflow names, "kind" for kinds."""

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Command:
    """A command: its name (`auto:list`), the RPC method it calls and how it shows the answer."""

    name: str
    help: str
    method: str
    params: tuple[Param, ...] = ()
    build: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """Turns parsed arguments into RPC params (e.g. reading a file); default: drop the Nones."""
    render: Callable[[Any], Any] | None = None
    """Turns the answer into a Rich renderable for people; --json prints the answer as it is."""
    mutating: bool = False
    outcome: Callable[[Any], int] | None = None
    """Exit code for an answer that reports a failure (e.g. a waited-for run that failed); default 0."""
    examples: tuple[str, ...] = field(default_factory=tuple)
    autostart: bool = True
    """Whether calling it may start a background daemon (not for commands that stop one)."""

    def rpc_params(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.build is not None:
            return self.build(args)
        return {k: v for k, v in args.items() if v is not None}


REGISTRY: dict[str, Command] = {}


def command(cmd: Command) -> Command:
    if cmd.name in REGISTRY:
        raise ValueError(f"command {cmd.name} registered twice")
    REGISTRY[cmd.name] = cmd
    return cmd


def all_commands() -> dict[str, Command]:
    """Every command, after loading the modules that define them."""
    from nexus_core.commands import auto, system  # noqa: F401

    return REGISTRY
