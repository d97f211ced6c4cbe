"""Schedule expressions: validation and fire times in a workflow's time zone, as pure functions.

The contract (README, "Schedules, time zones and DST"):

* A cron expression has 5 fields (minute hour day-of-month month day-of-week), optionally a 6th,
  LAST, field for seconds (croniter's convention), or is one of ALIASES.
* Fields are matched against the WALL-CLOCK time in the workflow's IANA zone.  Candidates are
  computed by croniter over naive local wall times (croniter never does DST arithmetic here) and
  each candidate wall time is then mapped to real instants with zoneinfo:

  - it exists once: that instant;
  - it does not exist (spring-forward gap): a *fixed-time* expression fires once at the first
    instant after the gap, i.e. the transition instant (Europe/Berlin 2026-03-29 02:30 -> 03:00
    CEST = 01:00 UTC); several nonexistent candidates, and a candidate at the transition instant
    itself, collapse into that one fire.  An *interval* expression skips nonexistent wall times:
    real time skipped nothing, so no real hour loses or doubles a fire;
  - it occurs twice (fall-back fold): a fixed-time expression fires once, at the first
    occurrence (fold=0); an interval expression fires at both occurrences.

  An expression is an *interval* expression when its hour field is `*` (or otherwise names all
  24 hours, e.g. `*/1` or `0-23`), seconds field or not: `*/15 * * * *`, `30 * * * *`, `@hourly`.
  Every other expression is *fixed-time*: `30 2 * * *`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
* `next_fire(expr, after, tz)` is the first fire strictly after `after` (any zone, also inside a
  fold or right after a gap), as aware UTC, or None when the expression does not fire within
  NEVER_HORIZON (~5 years).  `next_fires(expr, after, tz, count)` chains it; `fires_between(expr,
  tz, start, end, limit)` is the fires in (start, end], at most the `limit` most recent ones.
* Speed: parsed expressions are cached (`_compile`); a call costs about one croniter step plus two
  zoneinfo lookups per candidate (~30 us), gaps and folds a little more.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from itertools import islice
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadTypeRangeError, croniter

from nexus_core.errors import InvalidError

ALIASES = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight")
NEVER_HORIZON = timedelta(days=366 * 5)

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
_MICRO = timedelta(microseconds=1)
_ZERO = timedelta(0)
# Field names and ranges in croniter's order when seconds come last.
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 6), ("second", 0, 59))
# What croniter raises for an expression it cannot parse or a date it cannot find.
_CRON_ERRORS = (ValueError, KeyError, OverflowError, CroniterBadTypeRangeError)


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
    """Normalise and check a cron expression: 5 fields, optional seconds as a 6th (last), or an @alias.

    Refuses, with InvalidError(field="cron"), an empty expression, an unknown alias, a wrong number
    of fields, a field out of range or malformed, and an expression that never fires within
    NEVER_HORIZON of `now`; an unknown zone is InvalidError(field="timezone").
    """
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
            raise InvalidError(f"cron expression {expr!r} is not valid: {_why_invalid(fields)}", field="cron")
    zone(tz)
    start = now or datetime.now(_UTC)
    if next_fire(expr, start, tz) is None:
        raise InvalidError(f"cron expression {expr!r} never fires (no matching date within 5 years)", field="cron")
    return expr


def _why_invalid(fields: list[str]) -> str:
    """Which field of an expression croniter refused, in words."""
    for i, text in enumerate(fields):
        probe = ["*"] * len(fields)
        probe[i] = text
        if not croniter.is_valid(" ".join(probe), second_at_beginning=False):
            name, low, high = _FIELDS[i]
            return f"the {name} field {text!r} is out of range or malformed (allowed {low}-{high})"
    return ("its fields do not combine (ranges: minute 0-59, hour 0-23, day 1-31, month 1-12, "
            "weekday 0-6, second 0-59)")


class _Compiled:
    """A parsed expression: a croniter to copy per use (it is stateful) and its DST class."""

    __slots__ = ("proto", "interval")

    def __init__(self, expr: str):
        self.proto = croniter(expr, _EPOCH, second_at_beginning=False)
        # Interval: the hour field names every hour (croniter expands `*`, `*/1`, `0-23` to "*").
        self.interval = self.proto.expanded[1] == ["*"]

    def iterator(self, start: datetime) -> croniter:
        """A private croniter positioned at the naive wall time `start`."""
        it = croniter.__new__(croniter)
        it.__dict__.update(self.proto.__dict__)
        it.set_current(start)
        return it


@lru_cache(maxsize=8192)
def _compile(expr: str) -> _Compiled:
    return _Compiled(expr)


def is_interval(expr: str) -> bool:
    """True for an interval expression (hour field `*`), False for a fixed-time one; see the module doc."""
    return _compile(" ".join(expr.split())).interval


def _fold_length(wall: datetime, tz: ZoneInfo) -> timedelta:
    """How much wall time repeats when `wall` lies in a fall-back fold, else zero."""
    first = wall.replace(tzinfo=tz, fold=0).utcoffset()
    second = wall.replace(tzinfo=tz, fold=1).utcoffset()
    return first - second if first > second else _ZERO  # type: ignore[operator]


def _offset_at(tz: ZoneInfo, utc_naive: datetime) -> timedelta | None:
    return utc_naive.replace(tzinfo=_UTC).astimezone(tz).utcoffset()


def _transition(tz: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first instant (naive UTC, whole seconds) whose offset differs from `before`'s, in (before, after]."""
    old = _offset_at(tz, before)
    low, high = 0, int((after - before) // _SECOND)
    while high - low > 1:
        mid = (low + high) // 2
        if _offset_at(tz, before + mid * _SECOND) == old:
            low = mid
        else:
            high = mid
    return before + high * _SECOND


def _instants(wall: datetime, tz: ZoneInfo, interval: bool) -> tuple[tuple[datetime, ...], datetime, datetime]:
    """The fires (naive UTC) of one matching wall time, and bounds (low, high) on the instants that
    this and later (low) or earlier (high) wall times can give: both are monotone in wall time."""
    first = wall.replace(tzinfo=tz, fold=0).utcoffset()
    second = wall.replace(tzinfo=tz, fold=1).utcoffset()
    if first == second:  # exists once: the common case
        at = wall - first  # type: ignore[operator]
        return (at,), at, at
    if first > second:  # type: ignore[operator]  # fold: fold=0 is the first occurrence
        early, late = wall - first, wall - second  # type: ignore[operator]
        if interval:
            return (early, late), early, late
        return (early,), early, early
    # Gap (fold=0 reads it with the offset before the change, fold=1 with the one after).
    edge = _transition(tz, wall - second, wall - first)  # type: ignore[operator]
    return (() if interval else (edge,)), edge, edge


def _forward(expr: str, after: datetime, tz: ZoneInfo) -> Iterator[datetime]:
    """Fires strictly after `after`, ascending, as naive UTC; stops at NEVER_HORIZON."""
    c = _compile(expr)
    last = _naive_utc(after)
    horizon = last + NEVER_HORIZON
    local = (last.replace(tzinfo=_UTC)).astimezone(tz)
    start = local.replace(tzinfo=None)
    if c.interval and local.fold == 0:
        # `after` may be the first pass through a fold: the wall times of the fold before it
        # still have a second occurrence after it.
        start -= _fold_length(start, tz)
    it = c.iterator(start)
    pending: list[datetime] = []
    while True:
        try:
            wall = it.get_next(datetime)
        except _CRON_ERRORS:
            break
        fires, low, _ = _instants(wall, tz, c.interval)
        for at in fires:
            if at > last:
                heapq.heappush(pending, at)
        # Later wall times give instants >= low, so whatever is pending up to low is final.
        while pending and pending[0] <= low:
            at = heapq.heappop(pending)
            if at > last:
                if at > horizon:
                    return
                last = at
                yield at
        if low > horizon:
            break
    for at in sorted(pending):
        if last < at <= horizon:
            last = at
            yield at


def _backward(expr: str, end: datetime, floor: datetime, tz: ZoneInfo) -> Iterator[datetime]:
    """Fires t with floor < t <= end, descending, as naive UTC."""
    c = _compile(expr)
    end_utc, floor_utc = _naive_utc(end), _naive_utc(floor)
    local = end_utc.replace(tzinfo=_UTC).astimezone(tz)
    start = local.replace(tzinfo=None)
    if local.fold == 1:
        # `end` is the second pass through a fold: the fold's later wall times had their first
        # occurrence before it.
        start += _fold_length(start, tz)
    it = c.iterator(start + _MICRO)  # croniter's get_prev is strictly before; we want <= start
    pending: list[tuple[timedelta, datetime]] = []  # max-heap by instant
    last: datetime | None = None
    while True:
        try:
            wall = it.get_prev(datetime)
        except _CRON_ERRORS:
            break
        fires, _, high = _instants(wall, tz, c.interval)
        for at in fires:
            if floor_utc < at <= end_utc and (last is None or at < last):
                heapq.heappush(pending, (_EPOCH - at, at))
        # Earlier wall times give instants <= high, so whatever is pending from high up is final.
        while pending and pending[0][1] >= high:
            at = heapq.heappop(pending)[1]
            if last is None or at < last:
                last = at
                yield at
        if high <= floor_utc:
            break
    for _, at in sorted(pending):
        if last is None or at < last:
            last = at
            yield at


def _naive_utc(when: datetime) -> datetime:
    """An aware datetime as naive UTC; a naive one is taken to be UTC already."""
    if when.tzinfo is None:
        return when
    return when.astimezone(_UTC).replace(tzinfo=None)


def _normal(expr: str) -> str:
    return " ".join(expr.split())


def next_fire(expr: str, after: datetime, tz: str) -> datetime | None:
    """The first fire strictly after `after` (aware, any zone; naive is read as UTC), as aware UTC.

    None when the expression never fires within NEVER_HORIZON (or cannot be parsed).  DST rules:
    see the module docstring.
    """
    tzinfo = zone(tz)
    try:
        for at in _forward(_normal(expr), after, tzinfo):
            return at.replace(tzinfo=_UTC)
    except _CRON_ERRORS:
        return None
    return None


def next_fires(expr: str, after: datetime, tz: str, count: int) -> list[datetime]:
    """The next `count` fires after `after`, each strictly after the previous, as aware UTC.

    Fewer (possibly none) when the expression stops firing within NEVER_HORIZON of the last one.
    """
    tzinfo = zone(tz)
    if count <= 0:
        return []
    try:
        return [at.replace(tzinfo=_UTC) for at in islice(_forward(_normal(expr), after, tzinfo), count)]
    except _CRON_ERRORS:
        return []


def fires_between(expr: str, tz: str, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """The fires t with start < t <= end, ascending, as aware UTC; at most `limit` of them, the most
    recent `limit` when there are more (computed from `end` backwards, so cost follows `limit`)."""
    tzinfo = zone(tz)
    if limit <= 0 or _naive_utc(end) <= _naive_utc(start):
        return []
    try:
        newest_first = list(islice(_backward(_normal(expr), end, start, tzinfo), limit))
    except _CRON_ERRORS:
        return []
    return [at.replace(tzinfo=_UTC) for at in reversed(newest_first)]


def parse_at(value: str, tz: str, now: datetime | None = None) -> datetime:
    """An ISO time for a one-off run; naive times are read in `tz`; must be in the future."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidError(f"--at {value!r} is not an ISO date-time such as 2026-12-01T09:00", field="run_at") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(tz))
    now = now or datetime.now(_UTC)
    if parsed <= now:
        shown = parsed.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M")
        raise InvalidError(f"--at is in the past ({shown} {tz})", field="run_at")
    return parsed.astimezone(timezone.utc)
