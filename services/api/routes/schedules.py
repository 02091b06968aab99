"""Schedule preview: the next fire times of a schedule, so a company (and the console) can check
it before saving a scheduled delivery configuration."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.api.deps import Reader
from shared.errors import InvalidInput
from shared.schedules import InvalidSchedule, next_fire_times
from shared.validation import Moment

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])


class SchedulePreview(BaseModel):
    fire_times: list[datetime]


@router.get("/preview", response_model=SchedulePreview, summary="Preview a schedule's next fire times")
async def preview(
    caller: Reader,
    cron: str | None = Query(None, max_length=1000, description="Standard 5-field cron, e.g. `0 9 * * 1-5`"),
    simple: str | None = Query(None, max_length=100, description="hourly, daily, weekly or monthly"),
    timezone: str = Query("UTC", max_length=100, description="IANA time zone the schedule's times are in"),
    from_: Moment | None = Query(None, alias="from", description="Fire times strictly after this; default now"),
    count: int = Query(5, ge=1, le=100),
):
    """Exactly one of `cron` and `simple`. Times are given in the schedule's zone. A local time that
    occurs twice (clocks going back) fires once, at its first occurrence; one skipped by clocks
    going forward fires when the clock jumps. A schedule that never fires is refused (422)."""
    if (cron is None) == (simple is None):
        message = "give exactly one of cron or simple"
        raise InvalidInput(message, [{"loc": ["query", name], "msg": message} for name in ("cron", "simple")])
    schedule = {"cron": cron, "timezone": timezone} if cron is not None else {"simple": simple, "timezone": timezone}
    try:
        times = next_fire_times(schedule, from_ or datetime.now(UTC), count)
    except InvalidSchedule as exc:
        raise InvalidInput.at(["query", exc.field], exc.message) from None
    return SchedulePreview(fire_times=times)
