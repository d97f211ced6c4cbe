"""Schedule expressions: validation and "next fire after t in zone z" as pure functions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter

from nexus_core.errors import InvalidError

ALIASES = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight")
NEVER_HORIZON = timedelta(days=366 * 5)


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`, or an InvalidError with close matches."""
    try:
        if not name or name != name.strip() or name.startswith("/"):
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        lowered = name.lower()
        hints = sorted(z for z in available_timezones() if lowered and lowered.split("/")[-1] in z.lower())[:3]
        hint = f" (did you mean {', '.join(hints)}?)" if hints else " (e.g. Europe/Berlin, America/New_York, UTC)"
        raise InvalidError(f"unknown time zone {name!r}: use an IANA zone name{hint}", field="timezone") from None


def validate_cron(expr: str, tz: str, now: datetime | None = None) -> str:
    """Normalise and check a cron expression: 5 fields, optional seconds as a 6th, or an @alias."""
    expr = " ".join(expr.split())
    if not expr:
        raise InvalidError("cron expression is empty", field="cron")
    if expr.startswith("@"):
        if expr not in ALIASES:
            raise InvalidError(f"unknown cron alias {expr!r}; allowed: {', '.join(ALIASES)}", field="cron")
    else:
        fields = expr.split(" ")
        if len(fields) not in (5, 6):
            raise InvalidError(
                f"cron expression {expr!r} has {len(fields)} fields; use 5 (minute hour day month weekday) "
                "or 6 with seconds last", field="cron")
        if not croniter.is_valid(expr, second_at_beginning=False):
            raise InvalidError(f"cron expression {expr!r} is not valid: check each field's range "
                               "(minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6)", field="cron")
    start = now or datetime.now(timezone.utc)
    if next_fire(expr, start, tz) is None:
        raise InvalidError(f"cron expression {expr!r} never fires (no matching date within 5 years)", field="cron")
    return expr


def next_fire(expr: str, after: datetime, tz: str) -> datetime | None:
    """The first fire strictly after `after` (aware), in UTC, or None if it never fires."""
    local = after.astimezone(zone(tz))
    try:
        it = croniter(expr, local)
        nxt = it.get_next(datetime)
    except (ValueError, KeyError, OverflowError, StopIteration):
        return None
    if nxt - local > NEVER_HORIZON:
        return None
    return nxt.astimezone(timezone.utc)


def parse_at(value: str, tz: str, now: datetime | None = None) -> datetime:
    """An ISO time for a one-off run; naive times are read in `tz`; must be in the future."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidError(f"--at {value!r} is not an ISO date-time such as 2026-12-01T09:00", field="run_at") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(tz))
    now = now or datetime.now(timezone.utc)
    if parsed <= now:
        shown = parsed.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M")
        raise InvalidError(f"--at is in the past ({shown} {tz})", field="run_at")
    return parsed.astimezone(timezone.utc)
