"""Delivery schedules: the simple ones and 5-field cron with an IANA time zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

SIMPLE_SCHEDULES = {
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * mon",
    "monthly": "0 0 1 * *",
}


class InvalidSchedule(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def trigger_for(schedule: dict) -> CronTrigger:
    timezone_name = schedule.get("timezone") or "UTC"
    try:
        timezone = ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule("timezone", f"unknown IANA time zone {timezone_name!r}") from None
    if schedule.get("simple"):
        expression = SIMPLE_SCHEDULES.get(schedule["simple"])
        if expression is None:
            raise InvalidSchedule("simple", f"simple schedule must be one of {', '.join(SIMPLE_SCHEDULES)}")
    else:
        expression = schedule.get("cron") or ""
        if len(expression.split()) != 5:
            raise InvalidSchedule("cron", "a cron expression has 5 fields: minute hour day-of-month month day-of-week")
    try:
        return CronTrigger.from_crontab(expression, timezone=timezone)
    except ValueError as exc:
        raise InvalidSchedule("cron", f"invalid cron expression: {exc}") from None


def next_fire_time(schedule: dict, after: datetime) -> datetime:
    """The first fire time strictly after `after`."""
    # Cron has one-second resolution; apscheduler returns the first time >= its argument.
    return trigger_for(schedule).get_next_fire_time(None, after + timedelta(seconds=1))


def next_fire_times(schedule: dict, after: datetime, count: int) -> list[datetime]:
    times, moment = [], after
    for _ in range(count):
        moment = next_fire_time(schedule, moment)
        times.append(moment)
    return times
