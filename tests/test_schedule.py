"""Schedule arithmetic: cron fields match wall-clock time in the workflow's zone, DST-correct.

Fixed-time expressions (hour field not `*`): a nonexistent time fires once at the end of the gap,
a repeated time fires once at its first occurrence.  Interval expressions (hour field `*`): every
real instant whose wall time matches fires, nonexistent wall times are skipped.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from nexus_core.errors import InvalidError
from nexus_core.schedule import fires_between, is_interval, next_fire, next_fires, validate_cron

UTC = timezone.utc
TINY = timedelta(microseconds=1)


def u(text: str) -> datetime:
    """'2026-03-29T01:00Z' -> aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def us(*texts: str) -> list[datetime]:
    return [u(t) for t in texts]


# (zone, kind, local date of the change, UTC instant of the change, offset before, offset after)
CHANGES = [
    ("Europe/Berlin", "gap", "2026-03-29", "2026-03-29T01:00Z", 60, 120),
    ("Europe/Berlin", "fold", "2026-10-25", "2026-10-25T01:00Z", 120, 60),
    ("Europe/Berlin", "gap", "2027-03-28", "2027-03-28T01:00Z", 60, 120),
    ("Europe/Berlin", "fold", "2027-10-31", "2027-10-31T01:00Z", 120, 60),
    ("America/New_York", "gap", "2026-03-08", "2026-03-08T07:00Z", -300, -240),
    ("America/New_York", "fold", "2026-11-01", "2026-11-01T06:00Z", -240, -300),
    ("America/New_York", "gap", "2027-03-14", "2027-03-14T07:00Z", -300, -240),
    ("America/New_York", "fold", "2027-11-07", "2027-11-07T06:00Z", -240, -300),
    # Lord Howe shifts by 30 minutes: spring forward 02:00 -> 02:30, fall back 02:00 -> 01:30.
    ("Australia/Lord_Howe", "fold", "2026-04-05", "2026-04-04T15:00Z", 660, 630),
    ("Australia/Lord_Howe", "gap", "2026-10-04", "2026-10-03T15:30Z", 630, 660),
    ("Australia/Lord_Howe", "fold", "2027-04-04", "2027-04-03T15:00Z", 660, 630),
    ("Australia/Lord_Howe", "gap", "2027-10-03", "2027-10-02T15:30Z", 630, 660),
]


@pytest.mark.parametrize(("tz", "kind", "day", "instant", "before", "after"), CHANGES)
def test_change_days_are_what_tzdata_says(tz: str, kind: str, day: str, instant: str, before: int, after: int):
    z, at = ZoneInfo(tz), u(instant)
    assert (at - timedelta(seconds=1)).astimezone(z).utcoffset() == timedelta(minutes=before)
    assert at.astimezone(z).utcoffset() == timedelta(minutes=after)
    assert at.astimezone(z).date() == date.fromisoformat(day)
    assert (kind == "gap") == (after > before)


# (zone, expression, after, the next fires)
FIXED = [
    # Spring-forward gap: a nonexistent time fires once, at the end of the gap.
    ("Europe/Berlin", "30 2 * * *", "2026-03-28T12:00Z", us("2026-03-29T01:00Z", "2026-03-30T00:30Z")),
    ("Europe/Berlin", "30 2 * * *", "2027-03-27T12:00Z", us("2027-03-28T01:00Z", "2027-03-29T00:30Z")),
    ("America/New_York", "30 2 * * *", "2026-03-07T12:00Z", us("2026-03-08T07:00Z", "2026-03-09T06:30Z")),
    ("America/New_York", "30 2 * * *", "2027-03-13T12:00Z", us("2027-03-14T07:00Z", "2027-03-15T06:30Z")),
    ("Australia/Lord_Howe", "15 2 * * *", "2026-10-03T00:00Z", us("2026-10-03T15:30Z", "2026-10-04T15:15Z")),
    ("Australia/Lord_Howe", "15 2 * * *", "2027-10-02T00:00Z", us("2027-10-02T15:30Z", "2027-10-03T15:15Z")),
    # Several nonexistent times, and the transition instant itself, are one fire.
    ("Europe/Berlin", "*/15 2 * * *", "2026-03-28T12:00Z",
     us("2026-03-29T01:00Z", "2026-03-30T00:00Z", "2026-03-30T00:15Z")),
    ("Europe/Berlin", "0,30 2,3 * * *", "2026-03-28T12:00Z",
     us("2026-03-29T01:00Z", "2026-03-29T01:30Z", "2026-03-30T00:00Z")),
    ("Europe/Berlin", "0 3 * * *", "2026-03-28T12:00Z", us("2026-03-29T01:00Z", "2026-03-30T01:00Z")),
    ("America/New_York", "*/20 2 * * *", "2027-03-13T12:00Z",
     us("2027-03-14T07:00Z", "2027-03-15T06:00Z", "2027-03-15T06:20Z")),
    # Fall-back fold: a repeated time fires once, at its first occurrence.
    ("Europe/Berlin", "30 2 * * *", "2026-10-24T12:00Z", us("2026-10-25T00:30Z", "2026-10-26T01:30Z")),
    ("Europe/Berlin", "30 2 * * *", "2027-10-30T12:00Z", us("2027-10-31T00:30Z", "2027-11-01T01:30Z")),
    ("America/New_York", "30 1 * * *", "2026-10-31T12:00Z", us("2026-11-01T05:30Z", "2026-11-02T06:30Z")),
    ("America/New_York", "30 1 * * *", "2027-11-06T12:00Z", us("2027-11-07T05:30Z", "2027-11-08T06:30Z")),
    ("Australia/Lord_Howe", "45 1 * * *", "2026-04-04T00:00Z", us("2026-04-04T14:45Z", "2026-04-05T15:15Z")),
    ("Australia/Lord_Howe", "45 1 * * *", "2027-04-03T00:00Z", us("2027-04-03T14:45Z", "2027-04-04T15:15Z")),
    ("Europe/Berlin", "*/20 2 * * *", "2026-10-24T12:00Z",
     us("2026-10-25T00:00Z", "2026-10-25T00:20Z", "2026-10-25T00:40Z", "2026-10-26T01:00Z")),
    ("America/New_York", "*/30 1 * * *", "2026-10-31T12:00Z",
     us("2026-11-01T05:00Z", "2026-11-01T05:30Z", "2026-11-02T06:00Z")),
    ("Europe/Berlin", "0 3 * * *", "2026-10-24T12:00Z", us("2026-10-25T02:00Z", "2026-10-26T02:00Z")),
    # Fixed time with a seconds field (seconds are the 6th, last, field).
    ("Europe/Berlin", "30 2 * * * 15", "2026-03-28T12:00Z", us("2026-03-29T01:00:00Z", "2026-03-30T00:30:15Z")),
    ("Europe/Berlin", "30 2 * * * 15", "2026-10-24T12:00Z", us("2026-10-25T00:30:15Z", "2026-10-26T01:30:15Z")),
    # Zones without DST.
    ("Asia/Tokyo", "30 2 * * *", "2026-03-28T12:00Z", us("2026-03-28T17:30Z", "2026-03-29T17:30Z")),
    ("UTC", "30 2 * * *", "2026-03-28T12:00Z", us("2026-03-29T02:30Z", "2026-03-30T02:30Z")),
]


@pytest.mark.parametrize(("tz", "expr", "after", "expected"), FIXED)
def test_fixed_time_across_changes(tz: str, expr: str, after: str, expected: list[datetime]):
    assert next_fires(expr, u(after), tz, len(expected)) == expected
    assert next_fire(expr, u(after), tz) == expected[0]


# `after` inside a fold (either occurrence) or right at / after a gap.
AFTER_EDGE = [
    ("Europe/Berlin", "30 2 * * *", "2026-10-25T00:30Z", us("2026-10-26T01:30Z")),  # the fire itself
    ("Europe/Berlin", "30 2 * * *", "2026-10-25T00:45Z", us("2026-10-26T01:30Z")),  # 02:45 CEST
    ("Europe/Berlin", "30 2 * * *", "2026-10-25T01:15Z", us("2026-10-26T01:30Z")),  # 02:15 CET
    ("Europe/Berlin", "30 2 * * *", "2027-10-31T01:15Z", us("2027-11-01T01:30Z")),
    ("Europe/Berlin", "45 2 * * *", "2026-10-25T00:30Z", us("2026-10-25T00:45Z", "2026-10-26T01:45Z")),
    ("Europe/Berlin", "45 2 * * *", "2026-10-25T01:30Z", us("2026-10-26T01:45Z")),  # 02:30 CET
    ("Europe/Berlin", "*/15 * * * *", "2026-10-25T00:30Z", us("2026-10-25T00:45Z", "2026-10-25T01:00Z", "2026-10-25T01:15Z")),
    ("Europe/Berlin", "*/15 * * * *", "2026-10-25T00:50Z", us("2026-10-25T01:00Z", "2026-10-25T01:15Z", "2026-10-25T01:30Z")),
    ("Europe/Berlin", "*/15 * * * *", "2026-10-25T01:30Z", us("2026-10-25T01:45Z", "2026-10-25T02:00Z")),
    ("Europe/Berlin", "0 * * * *", "2026-10-25T00:00Z", us("2026-10-25T01:00Z", "2026-10-25T02:00Z")),
    ("Europe/Berlin", "0 * * * *", "2026-10-25T00:30Z", us("2026-10-25T01:00Z", "2026-10-25T02:00Z")),
    ("Europe/Berlin", "10 * * * *", "2026-10-25T00:20Z", us("2026-10-25T01:10Z", "2026-10-25T02:10Z")),
    ("Europe/Berlin", "10 * * * *", "2026-10-25T01:20Z", us("2026-10-25T02:10Z")),
    ("America/New_York", "0 * * * *", "2026-11-01T05:30Z", us("2026-11-01T06:00Z", "2026-11-01T07:00Z")),
    ("America/New_York", "30 1 * * *", "2027-11-07T05:30Z", us("2027-11-08T06:30Z")),
    ("Australia/Lord_Howe", "*/15 * * * *", "2026-04-04T14:50Z",
     us("2026-04-04T15:00Z", "2026-04-04T15:15Z", "2026-04-04T15:30Z")),
    ("Australia/Lord_Howe", "45 1 * * *", "2026-04-04T15:00Z", us("2026-04-05T15:15Z")),
    # At and right after a gap.
    ("Europe/Berlin", "30 2 * * *", "2026-03-29T00:59:59Z", us("2026-03-29T01:00Z")),
    ("Europe/Berlin", "30 2 * * *", "2026-03-29T01:00Z", us("2026-03-30T00:30Z")),
    ("Europe/Berlin", "0,30 2,3 * * *", "2026-03-29T01:00Z", us("2026-03-29T01:30Z")),
    ("Europe/Berlin", "*/15 * * * *", "2026-03-29T00:45Z", us("2026-03-29T01:00Z", "2026-03-29T01:15Z")),
    ("Europe/Berlin", "30 * * * *", "2026-03-29T00:00Z", us("2026-03-29T00:30Z", "2026-03-29T01:30Z")),
    ("Australia/Lord_Howe", "*/15 * * * *", "2026-10-03T15:15Z", us("2026-10-03T15:30Z", "2026-10-03T15:45Z")),
    ("Australia/Lord_Howe", "0 * * * *", "2026-10-03T14:30Z", us("2026-10-03T16:00Z")),
]


@pytest.mark.parametrize(("tz", "expr", "after", "expected"), AFTER_EDGE)
def test_after_inside_fold_or_at_gap(tz: str, expr: str, after: str, expected: list[datetime]):
    assert next_fires(expr, u(after), tz, len(expected)) == expected


def test_after_in_any_zone_and_result_is_utc():
    berlin = ZoneInfo("Europe/Berlin")
    first = datetime(2026, 10, 25, 2, 30, tzinfo=berlin)  # fold=0: 02:30 CEST
    second = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=berlin)  # 02:30 CET
    assert next_fire("*/15 * * * *", first, "Europe/Berlin") == u("2026-10-25T00:45Z")
    assert next_fire("*/15 * * * *", second, "Europe/Berlin") == u("2026-10-25T01:45Z")
    got = next_fire("30 2 * * *", datetime(2026, 3, 28, 8, 0, tzinfo=ZoneInfo("America/New_York")), "Europe/Berlin")
    assert got == u("2026-03-29T01:00Z")
    assert got.tzinfo is UTC


def _reference(tz: str, start: datetime, end: datetime, minutes: set[int]) -> list[datetime]:
    """Every real minute in [start, end) whose wall-clock minute is in `minutes`: what an interval
    expression must fire at, by definition."""
    z, out, t = ZoneInfo(tz), [], start
    while t < end:
        if t.astimezone(z).minute in minutes:
            out.append(t)
        t += timedelta(minutes=1)
    return out


DAYS = [(tz, day) for tz, _, day, *_ in CHANGES] + [("Asia/Tokyo", "2026-03-29"), ("UTC", "2026-10-25")]
# expression -> (wall minutes it matches, {(zone, kind): count of fires on the change day})
INTERVAL = {
    "*/15 * * * *": ({0, 15, 30, 45}, 15),
    "0 * * * *": ({0}, 60),
    "@hourly": ({0}, 60),
    "30 * * * *": ({30}, 60),
}
COUNTS = {  # fires over the whole local change day
    ("gap", 60): {"*/15 * * * *": 92, "0 * * * *": 23, "@hourly": 23, "30 * * * *": 23},
    ("fold", 60): {"*/15 * * * *": 100, "0 * * * *": 25, "@hourly": 25, "30 * * * *": 25},
    # Lord Howe: 02:00 and 02:15 do not exist (02:30 does); 01:30 and 01:45 happen twice.
    ("gap", 30): {"*/15 * * * *": 94, "0 * * * *": 23, "@hourly": 23, "30 * * * *": 24},
    ("fold", 30): {"*/15 * * * *": 98, "0 * * * *": 24, "@hourly": 24, "30 * * * *": 25},
    ("none", 0): {"*/15 * * * *": 96, "0 * * * *": 24, "@hourly": 24, "30 * * * *": 24},
}


@pytest.mark.parametrize("expr", sorted(INTERVAL))
@pytest.mark.parametrize(("tz", "day"), DAYS)
def test_interval_over_whole_change_day(tz: str, day: str, expr: str):
    z = ZoneInfo(tz)
    d = date.fromisoformat(day)
    start = datetime(d.year, d.month, d.day, tzinfo=z).astimezone(UTC)
    end = (datetime(d.year, d.month, d.day, tzinfo=z) + timedelta(days=1)).astimezone(UTC)
    change = next(((kind, abs(a - b)) for t, kind, dd, _, b, a in CHANGES if (t, dd) == (tz, day)), ("none", 0))
    minutes, step = INTERVAL[expr]

    got = fires_between(expr, tz, start - TINY, end - TINY, 1000)
    assert got == _reference(tz, start, end, minutes)
    assert len(got) == COUNTS[change][expr]
    assert next_fires(expr, start - TINY, tz, len(got)) == got
    gaps = {b - a for a, b in zip(got, got[1:])}
    if expr == "*/15 * * * *" or change[1] in (0, 60):
        # No real hour (or quarter) skipped or doubled: fires are evenly spaced in real time.
        assert gaps == {timedelta(minutes=step)}


def test_interval_change_days_exact_instants():
    hours = lambda first, n: [u(first) + timedelta(hours=k) for k in range(n)]  # noqa: E731
    day = fires_between("0 * * * *", "Europe/Berlin", u("2026-03-28T23:00Z") - TINY, u("2026-03-29T22:00Z") - TINY, 99)
    assert day == hours("2026-03-28T23:00Z", 23)
    day = fires_between("0 * * * *", "Europe/Berlin", u("2026-10-24T22:00Z") - TINY, u("2026-10-25T23:00Z") - TINY, 99)
    assert day == hours("2026-10-24T22:00Z", 25)
    # The repeated hour 02:00-03:00 fires 8 times for */15: 4 in CEST, 4 in CET.
    repeated = fires_between("*/15 * * * *", "Europe/Berlin", u("2026-10-25T00:00Z") - TINY, u("2026-10-25T01:45Z"), 99)
    assert repeated == [u("2026-10-25T00:00Z") + timedelta(minutes=15 * k) for k in range(8)]
    # 30 * * * * on the spring-forward day: 01:30 CET, then 03:30 CEST; nothing at 03:00.
    assert fires_between("30 * * * *", "Europe/Berlin", u("2026-03-29T00:00Z"), u("2026-03-29T02:00Z"), 9) == \
        us("2026-03-29T00:30Z", "2026-03-29T01:30Z")
    # Lord Howe: 01:00 (+10:30) then 03:00 (+11): wall 02:00 does not exist.
    assert fires_between("0 * * * *", "Australia/Lord_Howe", u("2026-10-03T14:00Z"), u("2026-10-03T17:00Z"), 9) == \
        us("2026-10-03T14:30Z", "2026-10-03T16:00Z", "2026-10-03T17:00Z")


SECONDS = [
    # Seconds are the LAST field: `*/10 * * * * *` is every second of minutes 0, 10, 20, ...
    ("Europe/Berlin", "*/10 * * * * *", "2026-03-29T00:59:58Z",
     us("2026-03-29T01:00:00Z", "2026-03-29T01:00:01Z", "2026-03-29T01:00:02Z")),
    ("Europe/Berlin", "*/10 * * * * *", "2026-10-25T00:50:58Z",
     us("2026-10-25T00:50:59Z", "2026-10-25T01:00:00Z", "2026-10-25T01:00:01Z")),
    ("Europe/Berlin", "* * * * * */20", "2026-03-29T00:59:20Z",
     us("2026-03-29T00:59:40Z", "2026-03-29T01:00:00Z", "2026-03-29T01:00:20Z")),
    ("Europe/Berlin", "0 * * * * 30", "2026-10-24T23:30Z",
     us("2026-10-25T00:00:30Z", "2026-10-25T01:00:30Z", "2026-10-25T02:00:30Z")),
    ("America/New_York", "0 * * * * 30", "2027-03-14T06:30Z", us("2027-03-14T07:00:30Z", "2027-03-14T08:00:30Z")),
]


@pytest.mark.parametrize(("tz", "expr", "after", "expected"), SECONDS)
def test_seconds_field(tz: str, expr: str, after: str, expected: list[datetime]):
    assert next_fires(expr, u(after), tz, len(expected)) == expected


def test_seconds_field_over_the_repeated_hour():
    got = fires_between("* * * * * */20", "Europe/Berlin", u("2026-10-25T00:00Z") - TINY, u("2026-10-25T01:59:59Z"), 999)
    assert len(got) == 360
    assert {b - a for a, b in zip(got, got[1:])} == {timedelta(seconds=20)}


ALIAS_ROWS = [
    ("Europe/Berlin", "@hourly", "2026-10-24T23:30Z", us("2026-10-25T00:00Z", "2026-10-25T01:00Z", "2026-10-25T02:00Z")),
    ("Europe/Berlin", "@hourly", "2026-03-29T00:30Z", us("2026-03-29T01:00Z", "2026-03-29T02:00Z")),
    ("Europe/Berlin", "@daily", "2026-03-28T12:00Z", us("2026-03-28T23:00Z", "2026-03-29T22:00Z")),
    ("Europe/Berlin", "@midnight", "2026-10-24T12:00Z", us("2026-10-24T22:00Z", "2026-10-25T23:00Z")),
    ("Europe/Berlin", "@weekly", "2026-03-28T12:00Z", us("2026-03-28T23:00Z", "2026-04-04T22:00Z")),
    ("Europe/Berlin", "@monthly", "2026-03-28T12:00Z", us("2026-03-31T22:00Z", "2026-04-30T22:00Z")),
    ("Europe/Berlin", "@yearly", "2026-03-28T12:00Z", us("2026-12-31T23:00Z", "2027-12-31T23:00Z")),
    ("Europe/Berlin", "@annually", "2026-03-28T12:00Z", us("2026-12-31T23:00Z", "2027-12-31T23:00Z")),
    ("America/New_York", "@daily", "2026-10-31T12:00Z", us("2026-11-01T04:00Z", "2026-11-02T05:00Z")),
]


@pytest.mark.parametrize(("tz", "expr", "after", "expected"), ALIAS_ROWS)
def test_aliases(tz: str, expr: str, after: str, expected: list[datetime]):
    assert next_fires(expr, u(after), tz, len(expected)) == expected


@pytest.mark.parametrize(("expr", "interval"), [
    ("*/15 * * * *", True), ("0 * * * *", True), ("30 * * * *", True), ("@hourly", True),
    ("*/10 * * * * *", True), ("0 */1 * * *", True), ("0 0-23 * * 1-5", True),
    ("30 2 * * *", False), ("0 */2 * * *", False), ("* 2 * * *", False), ("30 2 * * * 15", False),
    ("@daily", False), ("@midnight", False), ("@weekly", False), ("@monthly", False), ("@yearly", False),
    ("@annually", False),
])
def test_interval_or_fixed(expr: str, interval: bool):
    assert is_interval(expr) is interval


def test_next_fires_each_strictly_after_the_previous():
    assert next_fires("*/5 * * * *", u("2026-06-01T00:00Z"), "Europe/Berlin", 0) == []
    got = next_fires("*/5 * * * *", u("2026-06-01T00:00Z"), "Europe/Berlin", 4)
    assert got == us("2026-06-01T00:05Z", "2026-06-01T00:10Z", "2026-06-01T00:15Z", "2026-06-01T00:20Z")
    chained, at = [], u("2026-10-24T20:00Z")
    for _ in range(40):
        at = next_fire("*/15 * * * *", at, "Europe/Berlin")
        chained.append(at)
    assert next_fires("*/15 * * * *", u("2026-10-24T20:00Z"), "Europe/Berlin", 40) == chained


def test_fires_between_bounds_and_limit():
    start, end = u("2026-10-24T22:00Z"), u("2026-10-25T23:00Z")  # Berlin local midnight to midnight
    every = fires_between("0 * * * *", "Europe/Berlin", start, end, 100)
    assert len(every) == 25 and every[0] == u("2026-10-24T23:00Z") and every[-1] == end  # start excluded, end included
    assert fires_between("0 * * * *", "Europe/Berlin", start, end, 3) == us(
        "2026-10-25T21:00Z", "2026-10-25T22:00Z", "2026-10-25T23:00Z")  # the most recent ones
    assert fires_between("0 * * * *", "Europe/Berlin", start, end, 1) == [end]
    assert fires_between("0 * * * *", "Europe/Berlin", start, end, 0) == []
    assert fires_between("0 * * * *", "Europe/Berlin", end, end, 5) == []
    assert fires_between("0 * * * *", "Europe/Berlin", end, start, 5) == []


def test_fires_between_end_inside_fold():
    # end = 02:10 CET (second pass): 02:15-02:45 CEST already happened before it.
    got = fires_between("*/15 * * * *", "Europe/Berlin", u("2026-10-24T00:00Z"), u("2026-10-25T01:10Z"), 6)
    assert got == us("2026-10-24T23:45Z", "2026-10-25T00:00Z", "2026-10-25T00:15Z",
                     "2026-10-25T00:30Z", "2026-10-25T00:45Z", "2026-10-25T01:00Z")
    got = fires_between("30 2 * * *", "Europe/Berlin", u("2026-10-24T00:00Z"), u("2026-10-25T01:15Z"), 6)
    assert got == us("2026-10-24T00:30Z", "2026-10-25T00:30Z")
    got = fires_between("30 2 * * *", "Europe/Berlin", u("2026-10-24T00:00Z"), u("2026-10-25T00:29Z"), 6)
    assert got == us("2026-10-24T00:30Z")


def test_fires_between_across_gap_fires_once():
    start, end = u("2026-03-28T00:00Z"), u("2026-03-30T12:00Z")
    every = us("2026-03-28T01:00Z", "2026-03-28T01:15Z", "2026-03-28T01:30Z", "2026-03-28T01:45Z",
               "2026-03-29T01:00Z",
               "2026-03-30T00:00Z", "2026-03-30T00:15Z", "2026-03-30T00:30Z", "2026-03-30T00:45Z")
    assert fires_between("*/15 2 * * *", "Europe/Berlin", start, end, 50) == every
    assert fires_between("*/15 2 * * *", "Europe/Berlin", start, end, 5) == every[-5:]


@pytest.mark.parametrize(("tz", "expr"), [
    ("Europe/Berlin", "*/15 * * * *"), ("Europe/Berlin", "30 2 * * *"), ("Europe/Berlin", "*/20 2 * * *"),
    ("America/New_York", "0 * * * *"), ("America/New_York", "30 1 * * *"),
    ("Australia/Lord_Howe", "*/15 * * * *"), ("Australia/Lord_Howe", "45 1 * * *"), ("Australia/Lord_Howe", "15 2 * * *"),
    ("Europe/Berlin", "*/10 * * * * 0,30"),
])
def test_fires_between_agrees_with_next_fires(tz: str, expr: str):
    for _, _, day, *_ in (c for c in CHANGES if c[0] == tz):
        d = date.fromisoformat(day)
        start = datetime(d.year, d.month, d.day, tzinfo=UTC) - timedelta(days=1)
        end = start + timedelta(days=3)
        forward, at = [], next_fire(expr, start, tz)
        while at is not None and at <= end:
            forward.append(at)
            at = next_fire(expr, at, tz)
        assert forward == next_fires(expr, start, tz, len(forward))
        assert fires_between(expr, tz, start, end, 20000) == forward
        assert fires_between(expr, tz, start, end, 7) == forward[-7:]


def test_never_and_rare():
    after = u("2026-01-01T00:00Z")
    for expr in ("30 2 31 2 *", "0 0 30 2 *"):
        assert next_fire(expr, after, "Europe/Berlin") is None
        assert next_fires(expr, after, "Europe/Berlin", 3) == []
        assert fires_between(expr, "Europe/Berlin", after, after + timedelta(days=3000), 3) == []
    assert next_fire("0 0 29 2 *", u("2026-03-01T00:00Z"), "Asia/Tokyo") == u("2028-02-28T15:00Z")
    assert next_fire("not a cron", after, "UTC") is None


@pytest.mark.parametrize(("expr", "message"), [
    ("61 * * * *", "minute field '61' is out of range"),
    ("* 24 * * *", "hour field '24' is out of range"),
    ("* * * * * 60", "second field '60' is out of range"),
    ("* * 0 * *", "day of month field '0'"),
    ("* * *", "has 3 fields"),
    ("* * * * * * *", "has 7 fields"),
    ("30 2 31 2 *", "never fires"),
    ("@fortnightly", "unknown cron alias '@fortnightly'"),
    ("   ", "empty"),
])
def test_invalid_cron(expr: str, message: str):
    with pytest.raises(InvalidError) as caught:
        validate_cron(expr, "Europe/Berlin", u("2026-01-01T00:00Z"))
    assert caught.value.field == "cron"
    assert message in caught.value.message


def test_valid_cron_is_normalised():
    now = u("2026-01-01T00:00Z")
    assert validate_cron("  */5   * * * * ", "Europe/Berlin", now) == "*/5 * * * *"
    assert validate_cron("*/10 * * * * *", "UTC", now) == "*/10 * * * * *"
    assert validate_cron("@daily", "Australia/Lord_Howe", now) == "@daily"


def test_unknown_zone():
    with pytest.raises(InvalidError) as caught:
        validate_cron("*/5 * * * *", "Mars/Olympus_Mons", u("2026-01-01T00:00Z"))
    assert caught.value.field == "timezone"
    with pytest.raises(InvalidError) as caught:
        next_fire("*/5 * * * *", u("2026-01-01T00:00Z"), "Europe/Berlinn")
    assert caught.value.field == "timezone"
