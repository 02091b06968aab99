"""Schedules. Cron is held against an independent implementation of Debian cron (cronsim), not
against our own output; daylight-saving behaviour is held, over whole years in four zones, against
a walk through UTC a quarter hour at a time; every search is bounded; the preview endpoint answers
fire times or a 422 naming the query parameter."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scheduler.windows import due_windows
from shared.schedules import DAY_NAMES, MONTH_NAMES, InvalidSchedule, next_fire_times

WITHOUT_DST = ["UTC", "Asia/Kolkata"]
WITH_DST = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]  # Lord Howe shifts by 30 minutes
QUARTER = timedelta(minutes=15)


def examples(count: int) -> settings:
    """Hypothesis settings for `count` examples, the same ones at every run."""
    return settings(max_examples=count, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


# --- cron against cronsim --------------------------------------------------------------------


def reference(expression: str, zone: str, after: datetime, count: int) -> list[datetime]:
    """cronsim's next `count` fire times, in UTC."""
    iterator = CronSim(expression, after.astimezone(ZoneInfo(zone)))
    return [next(iterator).astimezone(UTC) for _ in range(count)]


def ours(expression: str, zone: str, after: datetime, count: int) -> list[datetime]:
    return [t.astimezone(UTC) for t in next_fire_times({"cron": expression, "timezone": zone}, after, count)]


def field(rng: random.Random, low: int, high: int, names: tuple[str, ...] = ()) -> str:
    """One random cron field: a list of `*`, `*/s`, `n`, `a-b`, `a-b/s`, `n/s` and names (any case)."""
    def number() -> int:
        return rng.randint(low, high)

    def term() -> str:
        step = rng.randint(1, high - low + 2)
        a, b = sorted((number(), number()))
        choices = ["*", f"*/{step}", str(a), f"{a}-{b}", f"{a}/{step}"]
        if a < b:  # cronsim reads `a-a/s` as `a/s` (from a to the end): not generated
            choices.append(f"{a}-{b}/{step}")
        if names:
            name = rng.choice(names)
            first, last = sorted(rng.sample(range(len(names)), 2))
            choices += [rng.choice([name, name.upper(), name.title()]), f"{names[first]}-{names[last]}"]
        return rng.choice(choices)

    return ",".join(term() for _ in range(rng.choice([1, 1, 1, 2, 3])))


def random_expression(rng: random.Random, fixed_time: bool) -> str:
    minute, hour = field(rng, 0, 59), field(rng, 0, 23)
    while fixed_time and (minute.startswith("*") or hour.startswith("*")):
        # cronsim applies Debian's clock-change rules only to jobs at fixed times
        minute, hour = field(rng, 0, 59), field(rng, 0, 23)
    return " ".join([minute, hour, field(rng, 1, 31), field(rng, 1, 12, MONTH_NAMES), field(rng, 0, 7, DAY_NAMES)])


def random_moment(rng: random.Random, zone: str) -> datetime:
    """A whole minute between 1970 and 2150 that the clock shows exactly once (cronsim works on
    naive local times, so it cannot say which of two 01:30s it starts from)."""
    while True:
        seconds = rng.randrange(int(datetime(1970, 1, 2).timestamp()), int(datetime(2150, 1, 1).timestamp()))
        moment = datetime.fromtimestamp(seconds // 60 * 60, UTC).astimezone(ZoneInfo(zone))
        if moment.utcoffset() == moment.replace(fold=1 - moment.fold).utcoffset():
            return moment


def assert_agrees(expression: str, zone: str, after: datetime, count: int = 8) -> None:
    try:
        expected = reference(expression, zone, after, count)
    except CronSimError:
        with pytest.raises(InvalidSchedule):
            ours(expression, zone, after, count)
        return
    except StopIteration:  # cronsim gives up after 50 years without a fire time
        return
    assert ours(expression, zone, after, count) == expected, (expression, zone, after)


@pytest.mark.parametrize("zones, fixed_time, count", [(WITHOUT_DST, False, 2000), (WITH_DST, True, 600)])
def test_random_cron_agrees_with_cronsim(zones, fixed_time, count):
    rng = random.Random(f"{zones}-{count}")  # the same expressions at every run
    for _ in range(count):
        zone = rng.choice(zones)
        assert_agrees(random_expression(rng, fixed_time), zone, random_moment(rng, zone))


KNOWN = ["0 9 * * 1", "0 9 * * 0", "0 9 * * 7", "0 9 1 * 1", "0 9 * * sun", "0 9 * * MON-FRI", "0 0 29 2 *",
         "0 0 29 2 1", "0 0 29 2 */7", "0 0 */29 2 1", "*/15 9-17 * * 1-5", "0 0 1,15 * *", "23 0-20/2 * * *",
         "0 0 * * 5-7", "0 12 1-7 * 1", "0 12 */2 * 1", "30 2 * jan,Jul *", "0 0 31 * *", "5/20 3/6 * * *",
         "0 0 31 2 *", "0 0 30 feb *", "0 0 31 4,6,9,11 *", "0 0 31 2 mon"]


@pytest.mark.parametrize("zone", WITHOUT_DST + WITH_DST)
@pytest.mark.parametrize("expression", KNOWN)
def test_known_expressions_agree_with_cronsim(expression, zone):
    fixed = not expression.split()[0].startswith("*") and not expression.split()[1].startswith("*")
    if zone in WITH_DST and not fixed:
        pytest.skip("cronsim fires wildcard jobs by the changing clock, not by our one rule")
    for after in (datetime(2026, 11, 27, 10, 7, tzinfo=UTC), datetime(2027, 2, 28, 23, 59, tzinfo=UTC),
                  datetime(2099, 12, 31, 12, tzinfo=UTC)):
        assert_agrees(expression, zone, after, count=12)


def test_weekdays_are_numbered_from_sunday_and_day_fields_are_ored_when_both_restricted():
    friday = datetime(2026, 11, 27, tzinfo=UTC)
    mondays = ours("0 9 * * 1", "UTC", friday, 5)
    assert [t.strftime("%a %H:%M") for t in mondays] == ["Mon 09:00"] * 5
    for sunday in ("0 9 * * 0", "0 9 * * 7", "0 9 * * sun", "0 9 * * SUN"):
        assert {t.strftime("%a") for t in ours(sunday, "UTC", friday, 5)} == {"Sun"}, sunday
    either = ours("0 9 1 * 1", "UTC", friday, 8)
    assert all(t.day == 1 or t.weekday() == 0 for t in either)
    assert any(t.day == 1 and t.weekday() != 0 for t in either) and any(t.day != 1 for t in either)
    both = ours("0 9 */1 * 1", "UTC", friday, 3)  # day-of-month starts with *: both must match
    assert [t.weekday() for t in both] == [0, 0, 0]


@pytest.mark.parametrize("expression", [
    "61 * * * *", "* 24 * * *", "* * 0 * *", "* * 32 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *",
    "* * *", "* * * * * *", "", "a * * * *", "1,,2 * * * *", "-1 * * * *", "1- * * * *", "L * * * *",
    "* * L * *", "* * * * 1#2", "* * * * 5L", "@daily", "\u0661 * * * *", "+1 * * * *", "1.5 * * * *",
    "* * * * mon-sun-tue", "* * * jan-xyz *", "0 " * 600 + "*",
    "0 0 31 2 *", "0 0 30,31 feb *", "0 0 31 4,6,9,11 *",
])
def test_invalid_and_never_firing_cron_is_refused(expression):
    with pytest.raises(InvalidSchedule) as refused:
        next_fire_times({"cron": expression}, datetime(2026, 1, 1, tzinfo=UTC), 1)
    assert refused.value.field == "cron"


def test_never_firing_names_the_reason():
    with pytest.raises(InvalidSchedule, match="never fires"):
        next_fire_times({"cron": "0 0 31 2 *"}, datetime(2026, 1, 1, tzinfo=UTC), 1)


@pytest.mark.timeout(10)
def test_rare_schedules_are_found_and_searches_are_bounded():
    started = time.perf_counter()
    # 2100 is not a leap year: 8 years between two 29 Februaries; 40 between two on a Sunday.
    assert ours("0 0 29 2 *", "UTC", datetime(2097, 3, 1, tzinfo=UTC), 1) == [datetime(2104, 2, 29, tzinfo=UTC)]
    assert ours("0 0 29 2 */7", "UTC", datetime(2088, 3, 1, tzinfo=UTC), 1) == [datetime(2128, 2, 29, tzinfo=UTC)]
    yearly = ours("0 0 1 1 *", "UTC", datetime(2026, 6, 1, tzinfo=UTC), 100)
    assert [t.year for t in yearly] == list(range(2027, 2127))
    assert time.perf_counter() - started < 2


# --- daylight saving, over whole years ----------------------------------------------------------


@cache
def quarter_hours(zone: str, year: int) -> list[tuple[datetime, datetime]]:
    """Every quarter hour of the year (and two days either side) as (UTC instant, local wall time)."""
    first = datetime(year, 1, 1, tzinfo=UTC) - timedelta(days=2)
    instants = (first + QUARTER * i for i in range((366 + 4) * 96))
    return [(instant, instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)) for instant in instants]


def documented_rule(zone: str, year: int, fires_at) -> list[datetime]:
    """Fire times by walking UTC instead of local days: a matching wall time fires the first time
    the clock shows it; matching wall times the clock jumps over fire at the jump; one fire time
    per instant. Valid for minutes that are multiples of 15 (every offset in these zones is)."""
    shown, fire_times, previous = set(), [], None
    for instant, wall in quarter_hours(zone, year):
        skipped = []
        if previous is not None and wall - previous > QUARTER:
            skipped = [previous + QUARTER * i for i in range(1, (wall - previous) // QUARTER)]
        if any(fires_at(w) for w in skipped) or (fires_at(wall) and wall not in shown):
            fire_times.append(instant)
        shown.add(wall)
        previous = wall
    return fire_times


def hours_field(hours: frozenset[int]) -> str:
    return "*" if len(hours) == 24 else ",".join(map(str, sorted(hours)))


def check_year(zone: str, year: int, minutes, hours, weekdays) -> None:
    """Our fire times and due windows over `year` in `zone` follow the documented rule exactly."""
    schedule = {"cron": f"{','.join(map(str, sorted(minutes)))} {hours_field(hours)} * * "
                        f"{'*' if len(weekdays) == 7 else ','.join(map(str, sorted(weekdays)))}",
                "timezone": zone}
    start, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    expected = [t for t in documented_rule(
        zone, year, lambda w: w.minute in minutes and w.hour in hours and w.isoweekday() % 7 in weekdays)
        if start < t <= end]
    fire_times = next_fire_times(schedule, start, len(expected) + 1)
    assert fire_times[-1] > end
    fire_times = [t.astimezone(UTC) for t in fire_times[:-1]]
    assert fire_times == expected, schedule
    assert all(a < b for a, b in zip(fire_times, fire_times[1:], strict=False))
    assert len({t.astimezone(ZoneInfo(zone)).replace(tzinfo=None) for t in fire_times}) == len(fire_times)

    # The scheduler's view: a clock moving through the year a day at a time, one window per fire time.
    windows, last_end = [], start
    for day in range(1, 367):
        now = min(start + timedelta(days=day), end)
        windows += due_windows(schedule, last_end, now)
        last_end = windows[-1][1] if windows else start
    windows = [(begin.astimezone(UTC), stop.astimezone(UTC)) for begin, stop in windows]
    assert [stop for _, stop in windows] == expected
    assert [begin for begin, _ in windows] == [start, *expected[:-1]]  # no gap, no overlap


@examples(12)
@given(zone=st.sampled_from(WITH_DST + ["Asia/Kolkata"]),
       minutes=st.frozensets(st.sampled_from([0, 15, 30, 45]), min_size=1),
       hours=st.one_of(st.just(frozenset(range(24))), st.frozensets(st.integers(0, 23), min_size=1, max_size=4)),
       weekdays=st.one_of(st.just(frozenset(range(7))), st.frozensets(st.integers(0, 6), min_size=1)))
def test_a_year_of_fire_times_follows_the_documented_rule(zone, minutes, hours, weekdays):
    check_year(zone, 2027, minutes, hours, weekdays)


@pytest.mark.parametrize("zone", WITH_DST)
@pytest.mark.parametrize("minutes, hours", [({0}, set(range(24))), ({30}, {1}), ({30}, {2}), ({0, 30}, {2, 3})])
def test_clock_change_nights(zone, minutes, hours):
    check_year(zone, 2027, frozenset(minutes), frozenset(hours), frozenset(range(7)))


def local_ends(windows, zone: str) -> list[str]:
    return [end.astimezone(ZoneInfo(zone)).strftime("%d %H:%M%z") for _, end in windows]


@pytest.mark.timeout(10)
def test_fall_back_nights_return_promptly_with_one_window_per_fire_time():
    berlin = ZoneInfo("Europe/Berlin")
    started = time.perf_counter()
    windows = due_windows({"cron": "0 * * * *", "timezone": "Europe/Berlin"},
                          datetime(2027, 10, 31, tzinfo=berlin), datetime(2027, 11, 1, tzinfo=berlin))
    assert time.perf_counter() - started < 0.5
    assert local_ends(windows, "Europe/Berlin")[:4] == ["31 01:00+0200", "31 02:00+0200", "31 03:00+0100",
                                                         "31 04:00+0100"]
    assert len(windows) == 24 and [e - s for s, e in windows][2] == timedelta(hours=2)

    new_york = ZoneInfo("America/New_York")
    started = time.perf_counter()
    windows = due_windows({"cron": "30 1 * * *", "timezone": "America/New_York"},
                          datetime(2027, 11, 6, tzinfo=new_york), datetime(2027, 11, 9, tzinfo=new_york))
    assert time.perf_counter() - started < 0.5
    assert local_ends(windows, "America/New_York") == ["06 01:30-0400", "07 01:30-0400", "08 01:30-0500"]
    assert [e - s for s, e in windows][1:] == [timedelta(hours=24), timedelta(hours=25)]


def test_spring_forward_fires_at_the_jump_once():
    fire_times = next_fire_times({"cron": "0,30 2 * * *", "timezone": "Europe/Berlin"},
                                 datetime(2027, 3, 27, 12, tzinfo=UTC), 3)
    assert [t.isoformat() for t in fire_times] == ["2027-03-28T03:00:00+02:00", "2027-03-29T02:00:00+02:00",
                                                   "2027-03-29T02:30:00+02:00"]
    lord_howe = next_fire_times({"cron": "*/15 * * * *", "timezone": "Australia/Lord_Howe"},
                                datetime(2027, 10, 2, 15, 0, tzinfo=UTC), 3)
    assert [t.strftime("%H:%M%z") for t in lord_howe] == ["01:45+1030", "02:30+1100", "02:45+1100"]


@pytest.mark.timeout(10)
def test_catch_up_is_bounded_and_merges_the_oldest_windows():
    started = time.perf_counter()
    last_end = datetime(2000, 1, 1, tzinfo=UTC)
    windows = due_windows({"cron": "* * * * *"}, last_end, datetime(2027, 1, 1, tzinfo=UTC))
    assert time.perf_counter() - started < 1
    assert len(windows) == 500 and windows[0][0] == last_end and windows[-1][1] == datetime(2027, 1, 1, tzinfo=UTC)
    assert all(s < e for s, e in windows) and all(a[1] == b[0] for a, b in zip(windows, windows[1:], strict=False))


# --- the preview endpoint --------------------------------------------------------------------


async def preview(tenant, **params):
    return await tenant.client.get("/v1/schedules/preview", params=params)


async def test_preview_lists_fire_times_in_the_schedule_zone(tenant):
    response = await preview(tenant, cron="0 9 * * 1", timezone="Europe/Berlin", **{"from": "2027-03-20T00:00:00Z"},
                             count=3)
    assert response.status_code == 200, response.text
    assert response.json() == {"fire_times": ["2027-03-22T09:00:00+01:00", "2027-03-29T09:00:00+02:00",
                                              "2027-04-05T09:00:00+02:00"]}
    gap = await preview(tenant, cron="30 2 * * *", timezone="Europe/Berlin", **{"from": "2027-03-27T12:00:00+01:00"},
                        count=1)
    assert gap.json() == {"fire_times": ["2027-03-28T03:00:00+02:00"]}
    daily = (await preview(tenant, simple="daily")).json()["fire_times"]
    assert len(daily) == 5 and all(t.endswith("T00:00:00Z") or t.endswith("T00:00:00+00:00") for t in daily)
    assert datetime.fromisoformat(daily[0]) > datetime.now(UTC)
    assert len((await preview(tenant, cron="* * * * *", count=100)).json()["fire_times"]) == 100
    rare = await preview(tenant, cron="0 0 29 2 */7", count=100, **{"from": "2199-12-31T23:59:59Z"})
    assert rare.status_code == 200 and len(rare.json()["fire_times"]) == 100


@pytest.mark.parametrize("params, loc", [
    ({}, "cron"),
    ({"cron": "0 * * * *", "simple": "daily"}, "cron"),
    ({"cron": "0 0 31 2 *"}, "cron"),
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "* * *"}, "cron"),
    ({"cron": ""}, "cron"),
    ({"cron": "0 * * * *\x00"}, "cron"),
    ({"cron": "0 " * 600}, "cron"),
    ({"simple": "fortnightly"}, "simple"),
    ({"simple": ""}, "simple"),
    ({"cron": "0 * * * *", "timezone": "Mars/Olympus"}, "timezone"),
    ({"cron": "0 * * * *", "timezone": ""}, "timezone"),
    ({"cron": "0 * * * *", "timezone": "../../etc/passwd"}, "timezone"),
    ({"cron": "0 * * * *", "count": 0}, "count"),
    ({"cron": "0 * * * *", "count": 101}, "count"),
    ({"cron": "0 * * * *", "count": "many"}, "count"),
    ({"cron": "0 * * * *", "from": "2027-01-01T00:00:00"}, "from"),
    ({"cron": "0 * * * *", "from": "1969-12-31T23:59:59Z"}, "from"),
    ({"cron": "0 * * * *", "from": "2200-01-01T00:00:00Z"}, "from"),
    ({"cron": "0 * * * *", "from": "yesterday"}, "from"),
])
async def test_preview_refuses_bad_input_naming_the_parameter(tenant, params, loc):
    response = await preview(tenant, **params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert ["query", loc] in [error["loc"] for error in response.json()["errors"]], response.json()


async def test_preview_needs_a_company_key(tenant):
    response = await tenant.client.get("/v1/schedules/preview", params={"simple": "daily"},
                                       headers={"authorization": "Bearer nope"})
    assert response.status_code == 401


async def test_a_schedule_that_never_fires_is_refused_and_nothing_is_stored(tenant):
    response = await tenant.client.post("/v1/delivery-configurations", json={
        "name": "never", "mode": "scheduled", "schedule": {"cron": "0 0 31 2 *"}})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["schedule", "cron"]
    assert "never fires" in response.json()["errors"][0]["msg"]
    assert (await tenant.client.get("/v1/delivery-configurations")).json() == []
