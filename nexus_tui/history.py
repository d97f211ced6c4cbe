"""The `:` line's history: up and down walk it, and it is kept across sessions in the user's state folder."""

from __future__ import annotations

import os
from pathlib import Path

MAX_ENTRIES = 500


def default_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "nexus" / "command-history"


class CommandHistory:
    """Entries oldest first; `older()`/`newer()` move a cursor that `add()` resets."""

    def __init__(self, path: Path | None = None):
        self.path = path or default_path()
        self.entries: list[str] = []
        self._at: int | None = None
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            lines = []
        self.entries = [line for line in lines if line.strip()][-MAX_ENTRIES:]

    def add(self, line: str) -> None:
        line = line.strip()
        self._at = None
        if not line or (self.entries and self.entries[-1] == line):
            return
        self.entries.append(line)
        self.entries = self.entries[-MAX_ENTRIES:]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("\n".join(self.entries) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only home keeps the history for this session only

    def older(self) -> str | None:
        if not self.entries:
            return None
        self._at = len(self.entries) - 1 if self._at is None else max(0, self._at - 1)
        return self.entries[self._at]

    def newer(self) -> str:
        if self._at is None:
            return ""
        self._at += 1
        if self._at >= len(self.entries):
            self._at = None
            return ""
        return self.entries[self._at]
