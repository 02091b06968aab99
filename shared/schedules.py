"""Delivery schedules: the simple ones and standard 5-field cron, in an IANA time zone.

Cron means standard (Vixie/Debian) cron: `minute hour day-of-month month day-of-week`, each a
list of `*`, `n`, `a-b`, with an optional `/step` (`n/step` means `n-last/step`); month names
`jan`..`dec`, weekday names `sun`..`sat`, and both 0 and 7 are Sunday. When both day fields are
restricted (neither starts with `*`), a day matches when EITHER matches (`0 9 1 * 1`: the 1st and
every Monday); otherwise both must.

Fire times are wall-clock times in the schedule's zone, mapped to instants once per local day:
- a local time that occurs twice (the clock falls back) fires once, at its first occurrence;
- a local time that does not exist (the clock springs forward) fires at the instant the clock
  jumps, i.e. when the local time after the gap begins;
- fire times that fall on the same instant are one fire time. So they are strictly increasing.

Every search is bounded: a schedule that can never fire (`0 0 31 2 *`) is refused when parsed,
and no search scans more than SEARCH_YEARS of calendar."""

from __future__ import annotations

import calendar
import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice, takewhile
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SIMPLE_SCHEDULES = {
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * mon",
    "monthly": "0 0 1 * *",
}

# Any schedule that fires at all fires again within 40 years: the longest wait is for
# 29 February on one weekday, across a century year that is not a leap year.
SEARCH_YEARS = 50
MAX_EXPRESSION_LENGTH = 1000

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
LONGEST_MONTH = {month: 29 if month == 2 else calendar.monthrange(2001, month)[1] for month in range(1, 13)}


class InvalidSchedule(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] means low + i

    def parse(self, text: str) -> frozenset[int]:
        return frozenset(value for term in text.split(",") for value in self._term(term))

    def _term(self, term: str) -> range:
        body, slash, step_text = term.partition("/")
        step = self._number(step_text) if slash else 1
        if step < 1:
            raise self._invalid(term, "a step is at least 1")
        if body == "*":
            first, last = self.low, self.high
        elif "-" in body:
            first_text, _, last_text = body.partition("-")
            first, last = self._value(first_text), self._value(last_text)
            if first > last:
                raise self._invalid(term, "a range goes from low to high")
        else:
            first = self._value(body)
            last = self.high if slash else first
        return range(first, last + 1, step)

    def _value(self, text: str) -> int:
        if text.lower() in self.names:
            return self.low + self.names.index(text.lower())
        value = self._number(text)
        if not self.low <= value <= self.high:
            raise self._invalid(text, f"must be between {self.low} and {self.high}")
        return value

    def _number(self, text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,3}", text):
            raise self._invalid(text, "expected a number" + (" or a name" if self.names else ""))
        return int(text)

    def _invalid(self, text: str, why: str) -> InvalidSchedule:
        return InvalidSchedule("cron", f"invalid {self.name} {text!r}: {why}")


MINUTE = _Field("minute", 0, 59)
HOUR = _Field("hour", 0, 23)
DAY_OF_MONTH = _Field("day-of-month", 1, 31)
MONTH = _Field("month", 1, 12, MONTH_NAMES)
DAY_OF_WEEK = _Field("day-of-week", 0, 7, DAY_NAMES)  # 7 is Sunday again


@dataclass(frozen=True)
class Cron:
    hours: tuple[int, ...]  # in order; a firing day's times are every hour with every minute
    minutes: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    either_day: bool  # both day fields restricted: a day matches when either matches

    @classmethod
    def parse(cls, expression: str) -> Cron:
        fields = expression.split()
        if len(fields) != 5 or len(expression) > MAX_EXPRESSION_LENGTH:
            raise InvalidSchedule("cron", "a cron expression has 5 fields: minute hour day-of-month month day-of-week")
        minute, hour, day, month, weekday = fields
        cron = cls(
            hours=tuple(sorted(HOUR.parse(hour))),
            minutes=tuple(sorted(MINUTE.parse(minute))),
            days=DAY_OF_MONTH.parse(day),
            months=MONTH.parse(month),
            weekdays=frozenset(d % 7 for d in DAY_OF_WEEK.parse(weekday)),
            either_day=not day.startswith("*") and not weekday.startswith("*"),
        )
        if not cron.either_day and not any(min(cron.days) <= LONGEST_MONTH[m] for m in cron.months):
            raise InvalidSchedule("cron", f"{expression!r} never fires: none of its months has day {min(cron.days)}")
        return cron

    @property
    def times_per_day(self) -> int:
        return len(self.hours) * len(self.minutes)

    def time_of_day(self, index: int) -> timedelta:
        """The `index`th wall-clock time of a firing day, as time since midnight (computed, not
        stored: `* * * * *` has 1440)."""
        hour, minute = divmod(index, len(self.minutes))
        return timedelta(hours=self.hours[hour], minutes=self.minutes[minute])

    def fires_on(self, day: date) -> bool:
        by_date, by_weekday = day.day in self.days, day.isoweekday() % 7 in self.weekdays
        return (by_date or by_weekday) if self.either_day else (by_date and by_weekday)

    def days_from(self, first: date, step: int) -> Iterator[date]:
        """The days it fires on, from `first` (included) forwards (step 1) or backwards (step -1).
        Bounded: gives up after SEARCH_YEARS of calendar without a firing day."""
        month_index, months_without = first.year * 12 + first.month - 1, 0
        while months_without < SEARCH_YEARS * 12:
            year, month = divmod(month_index, 12)
            month += 1
            if not 1 <= year <= 9999:
                return
            months_without += 1
            if month in self.months:
                length = calendar.monthrange(year, month)[1]
                for number in range(1, length + 1) if step > 0 else range(length, 0, -1):
                    day = date(year, month, number)
                    if (day - first).days * step >= 0 and self.fires_on(day):
                        months_without = 0
                        yield day
            month_index += step


@dataclass(frozen=True)
class Schedule:
    cron: Cron
    zone: ZoneInfo


def parse(schedule: dict) -> Schedule:
    """A stored or submitted schedule (`{"simple"|"cron", "timezone"}`), checked."""
    if not isinstance(schedule, dict):
        raise InvalidSchedule("schedule", "a schedule is an object with simple or cron, and timezone")
    zone = _zone(schedule.get("timezone") if schedule.get("timezone") is not None else "UTC")
    if schedule.get("simple") is not None:
        expression = SIMPLE_SCHEDULES.get(schedule["simple"]) if isinstance(schedule["simple"], str) else None
        if expression is None:
            raise InvalidSchedule("simple", f"simple schedule must be one of {', '.join(SIMPLE_SCHEDULES)}")
    else:
        expression = schedule.get("cron") or ""
        if not isinstance(expression, str):
            raise InvalidSchedule("cron", "a cron expression is a string")
    return Schedule(Cron.parse(expression), zone)


def _zone(name) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        raise InvalidSchedule("timezone", f"unknown IANA time zone {name!r}") from None


def _instants_on(day: date, cron: Cron, zone: ZoneInfo) -> Sequence[datetime]:
    """The UTC instants of the cron's times on local `day`, in order (equal neighbours where a gap
    maps several to one)."""
    midnight = datetime.combine(day, time(), zone)
    offset = midnight.utcoffset()
    if ((midnight + timedelta(days=1)).astimezone(UTC) - timedelta(seconds=1)).astimezone(zone).utcoffset() == offset:
        return _EvenDay(midnight.astimezone(UTC), cron)  # no clock change today: almost every day
    wall_midnight = midnight.replace(tzinfo=None)
    return [_instant(wall_midnight + cron.time_of_day(index), zone) for index in range(cron.times_per_day)]


@dataclass(frozen=True)
class _EvenDay(Sequence):
    """A day without a clock change: each fire time computed when asked for."""
    midnight: datetime
    cron: Cron

    def __len__(self) -> int:
        return self.cron.times_per_day

    def __getitem__(self, index: int) -> datetime:
        return self.midnight + self.cron.time_of_day(index)


def _instant(local: datetime, zone: ZoneInfo) -> datetime:
    """The first occurrence of a naive local time; for a time inside a spring-forward gap, the
    instant of the jump."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == local:
        return first
    # In a gap, fold=0 maps with the offset before the jump (landing after it) and fold=1 with
    # the offset after it (landing before it): bisect the whole seconds in between.
    before = int(local.replace(tzinfo=zone, fold=1).timestamp())
    after = int(first.timestamp())
    offset_after = first.astimezone(zone).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset_after:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def _fire_times(schedule: Schedule, start: datetime, forward: bool = True) -> Iterator[datetime]:
    """Fire times in UTC: strictly after `start` going forward, at or before it going backward."""
    step = 1 if forward else -1
    # A local day's fire times can reach into the next day (a gap at midnight): start a day early.
    first_day = start.astimezone(schedule.zone).date() - timedelta(days=step)
    previous = None
    for day in schedule.cron.days_from(first_day, step):
        instants = _instants_on(day, schedule.cron, schedule.zone)
        later = bisect_right(instants, start)  # instants[later:] are after start
        for index in range(later, len(instants)) if forward else range(later - 1, -1, -1):
            if instants[index] != previous:
                previous = instants[index]
                yield previous


def next_fire_times(schedule: dict, after: datetime, count: int) -> list[datetime]:
    """The first `count` fire times strictly after `after`, in the schedule's zone."""
    parsed = parse(schedule)
    times = list(islice(_fire_times(parsed, after), count))
    if len(times) < count:
        raise InvalidSchedule("cron", f"the schedule does not fire within {SEARCH_YEARS} years of {after:%Y-%m-%d}")
    return [moment.astimezone(parsed.zone) for moment in times]


def next_fire_time(schedule: dict, after: datetime) -> datetime:
    """The first fire time strictly after `after`."""
    return next_fire_times(schedule, after, 1)[0]


def latest_fire_times(schedule: dict, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """The latest (at most `limit`) fire times in `(after, until]`, oldest first, in UTC (Python
    compares and subtracts two datetimes of one zone by wall clock, wrong across a clock change)."""
    newest_first = takewhile(lambda moment: moment > after, _fire_times(parse(schedule), until, forward=False))
    return list(reversed(list(islice(newest_first, limit))))
