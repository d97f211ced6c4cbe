"""Parsing a command line from the registry alone: the CLI's fast path and the TUI's `:` line share it."""

from __future__ import annotations

import shlex
from typing import Any

from nexus_core.commands.registry import Command, all_commands
from nexus_core.errors import InvalidError


def usage(cmd: Command) -> str:
    """One line: `auto:trigger NAME [--wait] [--wait-timeout S]`."""
    parts = [cmd.name]
    for p in cmd.params:
        if p.positional:
            parts.append(p.name.upper() if p.required else f"[{p.name.upper()}]")
        elif p.type is bool:
            parts.append(f"[{p.option}]")
        else:
            meta = "|".join(p.choices) if p.choices else p.name.upper().replace("_", "-")
            parts.append(f"{p.option} {meta}" if p.required else f"[{p.option} {meta}]")
    return " ".join(parts)


def parse_args(cmd: Command, argv: list[str]) -> tuple[dict[str, Any], bool]:
    """The arguments of `cmd` and whether --json was given; InvalidError names what is wrong."""
    options = {p.option: p for p in cmd.params if not p.positional}
    positionals = [p for p in cmd.params if p.positional]
    args: dict[str, Any] = {p.name: (False if p.type is bool else None) for p in cmd.params}
    as_json = False
    seen = 0
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--json":
            as_json = True
        elif token.startswith("-") and token != "-" and not _is_number(token):
            name, eq, inline = token.partition("=")
            param = options.get(name)
            if param is None:
                known = ", ".join(sorted(options)) or "none"
                raise InvalidError(f"{cmd.name} has no option {name}; its options: {known}. "
                                   f"Usage: {usage(cmd)}", field=name.lstrip("-"))
            if param.type is bool:
                if eq:
                    raise InvalidError(f"{name} is a switch and takes no value", field=param.name)
                args[param.name] = True
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise InvalidError(f"{name} needs a value. Usage: {usage(cmd)}", field=param.name)
                    inline = argv[i]
                args[param.name] = _convert(param.type, inline, name, param.name)
        else:
            if seen >= len(positionals):
                raise InvalidError(f"unexpected argument {token!r}. Usage: {usage(cmd)}", field=None)
            args[positionals[seen].name] = token
            seen += 1
        i += 1
    missing = [p for p in cmd.params if p.required and p.type is not bool and args[p.name] is None]
    if missing:
        what = missing[0].name.upper() if missing[0].positional else missing[0].option
        raise InvalidError(f"{cmd.name} needs {what}. Usage: {usage(cmd)}", field=missing[0].name)
    for p in cmd.params:
        if p.choices and args.get(p.name) is not None and args[p.name] not in p.choices:
            raise InvalidError(f"{p.option} must be one of {', '.join(p.choices)}", field=p.name)
    return args, as_json


def parse_line(line: str) -> tuple[Command, dict[str, Any], bool]:
    """A whole `:` line (`auto:trigger daily-report --wait`) into its command and arguments."""
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise InvalidError(f"cannot read that line: {exc} (close the quote)") from None
    if not tokens:
        raise InvalidError("type a command, e.g. auto:list; `help` lists them all")
    commands = all_commands()
    cmd = commands.get(tokens[0])
    if cmd is None:
        close = sorted(n for n in commands if n.startswith(tokens[0].split(":")[0]))[:6]
        hint = f"; did you mean {', '.join(close)}" if close else "; `help` lists the commands"
        raise InvalidError(f"unknown command {tokens[0]!r}{hint}", field="command")
    args, as_json = parse_args(cmd, tokens[1:])
    return cmd, args, as_json


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _convert(kind: type, raw: str, option: str, name: str) -> Any:
    try:
        return kind(raw)
    except ValueError:
        what = {int: "a whole number", float: "a number"}.get(kind, kind.__name__)
        raise InvalidError(f"{option} must be {what}, got {raw!r}", field=name) from None
