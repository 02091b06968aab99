"""Scheduled delivery: windows, buffer files in media storage, the MSS-Messages announcement,
two replicas at once, catching up missed windows. The test drives the clock: it runs the
scheduler's WindowRunner with chosen `now` values against the session's real database, broker
and media folder (the running scheduler service ticks only hourly in tests)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
from prometheus_client import REGISTRY

from services.scheduler.windows import WindowRunner, due_windows
from shared.db import create_pool
from shared.ids import new_id
from shared.kafka import Topics, make_producer
from shared.media import MediaStore
from shared.settings import Settings
from tests.conftest import realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import publish, wait_for_status


@pytest.fixture
async def runner_factory(stack):
    settings = Settings(**{k[3:].lower(): v for k, v in stack.env.items()
                           if k.startswith("EM_") and k[3:].lower() in Settings.model_fields})
    pool = await create_pool(settings.database_url, size=4)
    producer = make_producer(settings)
    await producer.start()

    def make() -> WindowRunner:
        return WindowRunner(pool, MediaStore(settings), producer, Topics.of(settings), settings.api_base_url)

    yield make
    await producer.stop()
    await pool.close()


async def scheduled_configuration(tenant, schedule=None, active=True) -> dict:
    response = await tenant.client.post("/v1/delivery-configurations", json={
        "name": "nightly-files", "mode": "scheduled", "active": active,
        "schedule": schedule or {"simple": "hourly"}})
    assert response.status_code == 201, response.text
    return response.json()


async def buffered_events(tenant, source, count: int, **fields) -> tuple[dict, list[str], datetime]:
    """An active hourly configuration with `count` events waiting for its first window, and the
    time that window closes (the first full hour after the configuration was created)."""
    configuration = await scheduled_configuration(tenant)
    await subscribe(tenant, configuration["id"])
    await settle()
    ids = await publish(source, tenant, count=count, **fields)
    for event_id in ids:
        await wait_for_status(tenant, event_id, "buffered", configuration_id=configuration["id"])
    created = datetime.fromisoformat(configuration["created_at"])
    return configuration, ids, created.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


async def files_of(tenant, configuration: dict) -> list[dict]:
    return (await tenant.client.get("/v1/buffer-files", params={
        "delivery_configuration_id": configuration["id"]})).json()["data"]


def test_windows_follow_the_schedule_and_never_overlap():
    hourly = {"simple": "hourly"}
    start = datetime(2026, 3, 1, 10, 20, tzinfo=UTC)
    windows = due_windows(hourly, start, datetime(2026, 3, 1, 13, 0, tzinfo=UTC))
    assert [(s.hour, s.minute, e.hour) for s, e in windows] == [(10, 20, 11), (11, 0, 12), (12, 0, 13)]
    assert due_windows(hourly, start, datetime(2026, 3, 1, 10, 59, 59, tzinfo=UTC)) == []
    berlin = {"cron": "30 2 * * *", "timezone": "Europe/Berlin"}
    [(_, end)] = due_windows(berlin, datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 7, 2, tzinfo=UTC))
    assert end.astimezone(ZoneInfo("Europe/Berlin")).hour == 2 and end.astimezone(UTC).hour == 0
    monthly = due_windows({"simple": "monthly"}, datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC))
    assert [e.month for _, e in monthly] == [2, 3, 4]


async def test_schedule_validation_and_next_fire_times(tenant):
    configuration = await scheduled_configuration(tenant, {"cron": "*/15 * * * *", "timezone": "Europe/Berlin"},
                                                  active=False)
    times = [datetime.fromisoformat(t) for t in configuration["next_fire_times"]]
    assert len(times) == 5 and all(t.minute % 15 == 0 for t in times) and times == sorted(times)
    for schedule, loc in (({"cron": "61 * * * *"}, ["schedule", "cron"]),
                          ({"cron": "* * *"}, ["schedule", "cron"]),
                          ({"cron": "0 * * * *", "timezone": "Mars/Olympus"}, ["schedule", "timezone"]),
                          ({"simple": "fortnightly"}, ["schedule", "simple"])):
        response = await tenant.client.post("/v1/delivery-configurations", json={
            "name": "x", "mode": "scheduled", "schedule": schedule})
        assert response.status_code == 422, schedule
        assert response.json()["errors"][0]["loc"] == loc, response.json()
    xml = await tenant.client.post("/v1/delivery-configurations", json={
        "name": "x", "mode": "scheduled", "schedule": {"simple": "daily"}, "format": "xml"})
    assert xml.status_code == 422 and xml.json()["errors"][0]["loc"] == ["format"]


async def test_window_file_download_and_mss_announcement(tenant, source, receiver, runner_factory):
    configuration = await scheduled_configuration(tenant)
    await subscribe(tenant, configuration["id"])
    mss_path = unique_path("mss")
    mss = await realtime_configuration(tenant, receiver.url(mss_path))
    await subscribe(tenant, mss["id"], topic="MSS-Messages", event_types=["file.stored"])
    await settle()
    ids = await publish(source, tenant, count=3, data={"text": "window one"})
    for event_id in ids:
        await wait_for_status(tenant, event_id, "buffered", configuration_id=configuration["id"])

    created = datetime.fromisoformat(configuration["created_at"])
    first_fire = created.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    runner = runner_factory()
    handled = await runner.run_due_windows(first_fire + timedelta(minutes=1))

    listed = (await tenant.client.get("/v1/buffer-files",
                                      params={"delivery_configuration_id": configuration["id"]})).json()["data"]
    [row] = listed
    file_id = row["id"]
    assert file_id in handled and row["status"] == "stored" and row["event_count"] == 3
    assert datetime.fromisoformat(row["window_end"]) == first_fire
    assert row["url"].endswith(f"/v1/buffer-files/{file_id}/download")
    download = await tenant.client.get(f"/v1/buffer-files/{file_id}/download")
    assert download.status_code == 200 and len(download.content) == row["size_bytes"]
    document = orjson.loads(download.content)
    assert document["delivery_configuration_id"] == configuration["id"]
    assert document["event_count"] == 3
    assert sorted(e["id"] for e in document["events"]) == sorted(ids)
    assert document["events"][0]["data"] == {"text": "window one"}
    for event_id in ids:
        delivery = await wait_for_status(tenant, event_id, "delivered", configuration_id=configuration["id"])
        assert delivery["buffer_file_id"] == file_id

    [announcement] = await receiver.wait_for(mss_path, 1)
    body = announcement.json()
    assert body["topic"] == "MSS-Messages" and body["event_type"] == "file.stored"
    assert body["data"] == {"buffer_file_id": file_id, "url": row["url"], "event_count": 3,
                            "size_bytes": row["size_bytes"], "delivery_configuration_id": configuration["id"]}


async def test_missed_windows_are_caught_up_each_event_in_exactly_one_file(tenant, source, runner_factory):
    configuration, ids, first_fire = await buffered_events(tenant, source, 4)
    # The scheduler was "down" for three fire times: all three windows are written on start.
    handled = await runner_factory().run_due_windows(first_fire + timedelta(hours=2, minutes=5))
    rows = await files_of(tenant, configuration)
    assert len(rows) == 3 and {r["id"] for r in rows} <= set(handled)
    by_end = sorted(rows, key=lambda r: r["window_end"])
    assert [r["status"] for r in by_end] == ["stored", "empty", "empty"]
    assert [r["event_count"] for r in by_end] == [4, 0, 0]
    for earlier, later in zip(by_end, by_end[1:], strict=False):
        assert earlier["window_end"] == later["window_start"]
    # Running again at the same moment writes nothing new.
    again = await runner_factory().run_due_windows(first_fire + timedelta(hours=2, minutes=5))
    assert not {r["id"] for r in rows} & set(again)
    assert len(await files_of(tenant, configuration)) == 3


async def test_two_replicas_firing_at_once_write_each_window_once(tenant, source, runner_factory):
    configuration, _, first_fire = await buffered_events(tenant, source, 50)
    now = first_fire + timedelta(minutes=1)
    first, second = await asyncio.gather(runner_factory().run_due_windows(now),
                                         runner_factory().run_due_windows(now))
    rows = await files_of(tenant, configuration)
    assert len(rows) == 1
    claimed_by = [run for run in (first, second) if rows[0]["id"] in run]
    assert len(claimed_by) == 1, "exactly one replica wrote the window"
    assert rows[0]["event_count"] == 50


async def test_a_failed_write_is_recorded_and_retried(tenant, source, runner_factory, tmp_path):
    configuration, ids, first_fire = await buffered_events(tenant, source, 2)
    # The company's folder in this storage is a file: every write into it fails.
    (tmp_path / tenant.id).write_text("not a folder")
    broken = runner_factory()
    broken.media = MediaStore(Settings(media_url=tmp_path.as_uri()))
    now = first_fire + timedelta(minutes=1)
    await broken.run_due_windows(now)
    [failed] = await files_of(tenant, configuration)
    assert failed["status"] == "failed" and "Not a directory" in failed["error"] and failed["url"] is None
    for event_id in ids:  # still waiting for a file, not lost and not delivered
        await wait_for_status(tenant, event_id, "buffered")

    healthy = runner_factory()
    healthy.retry_failed_after = 0
    await asyncio.sleep(0.1)
    assert failed["id"] in await healthy.run_due_windows(now)
    [stored] = await files_of(tenant, configuration)
    assert stored["id"] == failed["id"] and stored["status"] == "stored" and stored["event_count"] == 2
    for event_id in ids:
        await wait_for_status(tenant, event_id, "delivered")


BROKEN_SCHEDULES = {
    "never fires": '{"cron": "0 0 31 2 *", "timezone": "UTC"}',
    "not an object": '"hourly"',
    "cannot be decoded": '{"cron": 1e400}',  # valid jsonb, a number no double holds
}


async def test_a_broken_configuration_is_set_aside_once_and_the_others_go_on(tenant, other_tenant, source,
                                                                              runner_factory):
    """Rows written straight into the database (the api refuses these schedules): each is
    reported, set aside once and skipped; another company's window is written all the same."""
    runner = runner_factory()
    broken = {reason: new_id("dc") for reason in BROKEN_SCHEDULES}
    for reason, configuration_id in broken.items():
        await runner.pool.execute(
            "INSERT INTO delivery_configurations (id, company_id, name, mode, active, endpoints, format, schedule,"
            " authentication, created_at, updated_at)"
            " VALUES ($1, $2, 'broken', 'scheduled', true, '[]', 'json', $3::jsonb, '{}', now() - interval '2 days',"
            " now())", configuration_id, tenant.id, BROKEN_SCHEDULES[reason])
    try:
        configuration, _, first_fire = await buffered_events(other_tenant, source, 2)
        errors_before = REGISTRY.get_sample_value("em_scheduler_configuration_errors_total") or 0
        for _ in range(2):  # a second tick does not set the same schedules aside again
            await runner.run_due_windows(first_fire + timedelta(minutes=1))

        [written] = await files_of(other_tenant, configuration)
        assert written["status"] == "stored" and written["event_count"] == 2
        errors = REGISTRY.get_sample_value("em_scheduler_configuration_errors_total") - errors_before
        assert errors >= 2 * len(broken)  # every tick counts them
        set_aside = await runner.pool.fetch(
            "SELECT source, service, company_id, reason, payload FROM dead_letters WHERE source = ANY($1::text[])",
            [f"delivery_configuration:{i}" for i in broken.values()])
        by_source = {row["source"]: row for row in set_aside}
        assert len(set_aside) == len(broken) == len(by_source), set_aside
        never = by_source[f"delivery_configuration:{broken['never fires']}"]
        assert never["service"] == "scheduler" and never["company_id"] == tenant.id
        assert "never fires" in never["reason"] and orjson.loads(never["payload"])["cron"] == "0 0 31 2 *"
        assert await runner.pool.fetchval(
            "SELECT count(*) FROM buffer_files WHERE delivery_configuration_id = ANY($1::text[])",
            list(broken.values())) == 0
    finally:
        await runner.pool.execute("DELETE FROM delivery_configurations WHERE id = ANY($1::text[])",
                                  list(broken.values()))
        await runner.pool.execute("DELETE FROM dead_letters WHERE source = ANY($1::text[])",
                                  [f"delivery_configuration:{i}" for i in broken.values()])
