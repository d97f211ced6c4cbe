"""Registry of workflow kinds: every module in this package that defines `KIND` is one."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from nexus_core.errors import InvalidError
from nexus_core.kinds.base import Kind, KindResult, RunContext

__all__ = ["Kind", "KindResult", "RunContext", "all_kinds", "get_kind"]


@cache
def all_kinds() -> dict[str, Kind]:
    """Every known kind by name, discovered from this package's modules."""
    found: dict[str, Kind] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        kind = getattr(module, "KIND", None)
        if isinstance(kind, Kind):
            found[kind.name] = kind
    return dict(sorted(found.items()))


def get_kind(name: str) -> Kind:
    """The kind called `name`, or an InvalidError listing the kinds there are."""
    kinds = all_kinds()
    try:
        return kinds[name]
    except KeyError:
        raise InvalidError(
            f"unknown kind {name!r}; choose one of: {', '.join(kinds)}", field="kind"
        ) from None
