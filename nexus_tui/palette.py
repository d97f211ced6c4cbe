"""The command palette (ctrl+p) offers every command of the shared registry, as the `:` line does."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from nexus_core.commands.parse import usage
from nexus_core.commands.registry import Command, all_commands


class RegistryCommands(Provider):
    """Picking a command opens the `:` line with it typed in (and runs it when it needs no arguments)."""

    def _choose(self, cmd: Command) -> None:
        app: Any = self.app
        needs_args = any(p.required for p in cmd.params)
        app.open_command_line(cmd.name + (" " if needs_args else ""))
        if not needs_args:
            app.call_later(app.screen.submit_line, cmd.name)

    async def discover(self) -> Hits:
        for cmd in all_commands().values():
            yield DiscoveryHit(cmd.name, partial(self._choose, cmd), help=cmd.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for cmd in all_commands().values():
            score = max(matcher.match(cmd.name), matcher.match(cmd.help) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(cmd.name), partial(self._choose, cmd),
                          text=cmd.name, help=f"{cmd.help}  —  {usage(cmd)}")
