"""Settings: defaults, then /etc/nexus/nexus.toml, then the user's file, then NEXUS_* variables, then flags."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nexus_core.errors import InvalidError

ROLES = ("viewer", "operator", "admin")
SYSTEM_CONFIG = Path("/etc/nexus/nexus.toml")


@dataclass(frozen=True)
class OperatorRule:
    """Maps a unix user or group to a role in an organization."""

    role: str
    organization: str
    user: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the daemon and the clients need to know, resolved once."""

    home: Path
    socket_path: Path
    database_url: str | None = None
    redis_url: str | None = None
    redis_namespace: str = "nexus"
    socket_group: str | None = None
    timezone: str = "UTC"
    organization: str = "default"
    operators: tuple[OperatorRule, ...] = ()
    worker_threads: int = 16
    shutdown_grace: float = 30.0
    log_level: str = "info"
    log_format: str = "auto"
    god_minutes: float = 15.0
    """How long god mode lasts when `mode:god` names no --minutes."""
    config_files: tuple[Path, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        """True when Nexus keeps its own SQLite and Redis in its data folder."""
        return self.database_url is None and self.redis_url is None

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'nexus.db'}"

    @property
    def log_path(self) -> Path:
        return self.home / "daemon.log"

    def with_overrides(self, **changes: Any) -> "Settings":
        return replace(self, **changes)


def _data_home() -> Path:
    if os.environ.get("NEXUS_HOME"):
        return Path(os.environ["NEXUS_HOME"]).expanduser().resolve()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "nexus"


def _user_config() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "nexus" / "nexus.toml"


def _default_socket(home: Path) -> Path:
    if os.environ.get("NEXUS_HOME"):
        return home / "nexus.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "nexus" / "nexus.sock"
    return home / "nexus.sock"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise InvalidError(f"configuration file {path} is not valid TOML: {exc}", field="config") from None
    except PermissionError:
        return {}


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _operators(raw: Any, default_org: str) -> tuple[OperatorRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidError("[[operators]] must be a list of tables with user or group, role, organization", field="operators")
    rules = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not (item.get("user") or item.get("group")):
            raise InvalidError(f"operators[{i}] needs `user` or `group`", field=f"operators[{i}]")
        role = item.get("role", "viewer")
        if role not in ROLES:
            raise InvalidError(f"operators[{i}].role is {role!r}; allowed: {', '.join(ROLES)}", field=f"operators[{i}].role")
        rules.append(
            OperatorRule(role=role, organization=str(item.get("organization", default_org)),
                         user=item.get("user"), group=item.get("group"))
        )
    return tuple(rules)


MAX_GOD_MINUTES = 240.0


def _god_minutes(raw: Any) -> float:
    try:
        minutes = float(raw)
    except (TypeError, ValueError):
        minutes = float("nan")
    if not 0 < minutes <= MAX_GOD_MINUTES:
        raise InvalidError(f"modes.god_minutes (NEXUS_GOD_MINUTES) must be a number of minutes above 0 and at most "
                           f"{MAX_GOD_MINUTES:g}, got {raw!r}", field="modes.god_minutes")
    return minutes


def load_settings(config_file: str | os.PathLike[str] | None = None, **flags: Any) -> Settings:
    """Resolve the settings in the documented order; `flags` win over everything."""
    explicit = config_file or os.environ.get("NEXUS_CONFIG")
    files = [Path(explicit)] if explicit else [SYSTEM_CONFIG, _user_config()]
    if explicit and not Path(explicit).exists():
        raise InvalidError(f"configuration file {explicit} does not exist", field="config")
    raw: dict[str, Any] = {}
    used = []
    for path in files:
        data = _read_toml(path)
        if data:
            used.append(path)
            _merge(raw, data)
    daemon = raw.get("daemon", {})
    home = _data_home() if os.environ.get("NEXUS_HOME") or "home" not in daemon else Path(daemon["home"]).expanduser()
    socket = _env("NEXUS_SOCKET") or daemon.get("socket")
    org = _env("NEXUS_ORGANIZATION") or daemon.get("organization", "default")
    settings = Settings(
        home=home,
        socket_path=Path(socket).expanduser() if socket else _default_socket(home),
        database_url=_env("NEXUS_DATABASE_URL", "DATABASE_URL") or raw.get("database", {}).get("url") or None,
        redis_url=_env("NEXUS_REDIS_URL", "REDIS_URL") or raw.get("redis", {}).get("url") or None,
        redis_namespace=_env("NEXUS_REDIS_NAMESPACE") or raw.get("redis", {}).get("namespace", "nexus"),
        socket_group=daemon.get("socket_group"),
        timezone=_env("NEXUS_TIMEZONE") or daemon.get("timezone", "UTC"),
        organization=org,
        operators=_operators(raw.get("operators"), org),
        worker_threads=int(_env("NEXUS_WORKER_THREADS") or daemon.get("worker_threads", 16)),
        shutdown_grace=float(_env("NEXUS_SHUTDOWN_GRACE") or daemon.get("shutdown_grace", 30)),
        log_level=(_env("NEXUS_LOG_LEVEL") or daemon.get("log_level", "info")).lower(),
        log_format=_env("NEXUS_LOG_FORMAT") or daemon.get("log_format", "auto"),
        god_minutes=_god_minutes(_env("NEXUS_GOD_MINUTES") or raw.get("modes", {}).get("god_minutes", 15)),
        config_files=tuple(used),
        extra={k: v for k, v in raw.items() if k not in {"daemon", "database", "redis", "operators", "modes"}},
    )
    flags = {k: v for k, v in flags.items() if v is not None}
    return settings.with_overrides(**flags) if flags else settings
