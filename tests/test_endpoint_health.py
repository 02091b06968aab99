"""Endpoint health decided without I/O (services/dispatcher/health.py): the failing spell a batch
of attempts records, and what the watcher does about a watched endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.dispatcher.health import Announce, Disable, Health, health_rows, next_step
from services.dispatcher.sender import Attempt
from shared.operations import OperationalEvent
from shared.statuses import AttemptOutcome

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def attempt(endpoint_id: str, seconds: float, ok: bool) -> Attempt:
    return Attempt(endpoint_id, f"https://{endpoint_id}.example", T0 + timedelta(seconds=seconds), 5.0,
                   200 if ok else 503, None if ok else "HTTP 503",
                   AttemptOutcome.SUCCESS if ok else AttemptOutcome.RETRYABLE)


def at(seconds: float | None):
    return None if seconds is None else T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(("name", "attempts", "spell"), [
    ("only successes: healthy", [(0, True), (1, True)], (None, None, 1, None, 0)),
    ("only failures: failing since the first", [(3, False), (1, False)], (1, 3, None, "HTTP 503", 2)),
    ("failures, then a success: healthy again", [(1, False), (2, True)], (None, 1, 2, "HTTP 503", 0)),
    ("a success, then failures: failing since the first after it", [(1, False), (2, True), (3, False), (4, False)],
     (3, 4, 2, "HTTP 503", 2)),
])
def test_a_batch_records_the_endpoints_spell(name, attempts, spell):
    [row] = health_rows([("dc_1", "co_1", [attempt("ep", s, ok) for s, ok in attempts])])
    assert row[:4] == ("dc_1", "ep", "co_1", "https://ep.example")
    since, last_failure, last_success, error, failures = spell
    assert row[4:] == (at(since), at(last_failure), at(last_success), error, failures)


def test_rows_are_one_per_endpoint_in_a_stable_order():
    rows = health_rows([("dc_2", "co", [attempt("b", 0, True)]), ("dc_1", "co", [attempt("a", 0, False)]),
                        ("dc_2", "co", [attempt("b", 1, False)])])
    assert [(r[0], r[1], r[4]) for r in rows] == [("dc_1", "a", at(0)), ("dc_2", "b", at(1))]


DAY = 86400.0
THRESHOLDS = [3600.0, 6 * 3600.0, DAY]


def watched(failing_for: float | None, span: float = 0.0, announced: float = 0.0, active: bool = True,
            failures: int = 20) -> dict:
    now = T0
    since = None if failing_for is None else now - timedelta(seconds=failing_for)
    return {"failing_since": since, "last_failure_at": since and since + timedelta(seconds=span),
            "announced_seconds": announced, "active": active, "last_error": "HTTP 503", "failures": failures}


@pytest.mark.parametrize(("name", "row", "expected"), [
    ("healthy and never announced: nothing", watched(None), None),
    ("healthy again after an announcement: recovered", watched(None, announced=3600),
     Announce(OperationalEvent.ENDPOINT_RECOVERED, 0.0)),
    ("failing for less than the first threshold: nothing", watched(1800, span=1800), None),
    ("past the first threshold: failing", watched(4000, span=4000), Announce(OperationalEvent.ENDPOINT_FAILING, 3600)),
    ("already announced at that threshold: nothing", watched(4000, span=4000, announced=3600), None),
    ("past several thresholds at once: the highest", watched(2 * DAY, span=2 * DAY, announced=0),
     Announce(OperationalEvent.ENDPOINT_FAILING, DAY)),
    ("failures spanning the disable time: disabled", watched(5 * DAY, span=5 * DAY, announced=DAY),
     Disable("failed without a success for 5.0 days (last error: HTTP 503)")),
    ("one burst long ago, then silence: not disabled", watched(6 * DAY, span=60, announced=DAY), None),
    ("two failures days apart: not disabled", watched(6 * DAY, span=6 * DAY, announced=DAY, failures=2), None),
    ("an endpoint someone disabled: left alone", watched(6 * DAY, span=6 * DAY, active=False), None),
])
def test_next_step(name, row, expected):
    assert next_step(row, T0, 5 * DAY, THRESHOLDS) == expected


async def test_a_malformed_configuration_does_not_stall_the_watcher_for_others(stack, tenant, other_tenant, receiver):
    """A configuration row an older release stored with `endpoints` not a list must not fail
    the health check of every other company's endpoints."""
    from services.dispatcher.health import Health
    from shared.db import create_pool
    from shared.kafka import Topics, make_producer
    from shared.settings import Settings
    from tests.conftest import realtime_configuration, unique_path

    settings = Settings(database_url=stack.env["EM_DATABASE_URL"], kafka_bootstrap=stack.env["EM_KAFKA_BOOTSTRAP"])
    pool = await create_pool(settings.database_url, size=2)
    producer = make_producer(settings)
    await producer.start()
    try:
        failing = await realtime_configuration(other_tenant, receiver.url(unique_path()))
        broken = await realtime_configuration(tenant, receiver.url(unique_path()))
        for configuration in (failing, broken):
            await pool.execute(
                "INSERT INTO endpoint_health (delivery_configuration_id, endpoint_id, company_id, url, failing_since, "
                "last_failure_at, failures) VALUES ($1, $2, $3, 'https://x.example', now() - interval '2 hours', "
                "now(), 3)", configuration["id"], configuration["endpoints"][0]["id"], configuration["id"])
        await pool.execute("""UPDATE delivery_configurations SET endpoints = '{"not": "a list"}' WHERE id = $1""",
                           broken["id"])
        await Health(pool, producer, Topics.of(settings).events, settings).check_once()
        announced = await pool.fetchval("SELECT announced_seconds FROM endpoint_health "
                                        "WHERE delivery_configuration_id = $1", failing["id"])
        assert announced == 3600, "the other company's failing endpoint was announced at the first threshold"
    finally:
        await producer.stop()
        await pool.close()


class RecordingHealth(Health):
    """A dispatcher replica's Health whose notices are recorded instead of sent."""

    def __init__(self, pool, settings):
        super().__init__(pool, None, "unused", settings)
        self.sent: list[tuple[str, str, dict]] = []

    async def notify(self, event_type, company_id, configuration_id, **details):
        self.sent.append((str(event_type), configuration_id, details))


async def test_replicas_send_a_configuration_one_exhausted_notice_a_period(stack, tenant, other_tenant, receiver,
                                                                           monkeypatch):
    """Every replica sends a configuration's deliveries (shared/messages.py delivery_key), so
    each meets its exhausted deliveries: the period's notice is one for them all, and counts
    what every replica met since the last."""
    from services.dispatcher import health
    from shared.db import create_pool
    from shared.settings import Settings
    from tests.conftest import eventually, realtime_configuration, unique_path

    settings = Settings(database_url=stack.env["EM_DATABASE_URL"], kafka_bootstrap=stack.env["EM_KAFKA_BOOTSTRAP"])
    pool = await create_pool(settings.database_url, size=2)
    try:
        failing = (await realtime_configuration(tenant, receiver.url(unique_path())))["id"]
        other = (await realtime_configuration(other_tenant, receiver.url(unique_path())))["id"]
        first, second = RecordingHealth(pool, settings), RecordingHealth(pool, settings)
        await first.exhausted(failing, tenant.id, delivery_id="d1")
        await second.exhausted(failing, tenant.id, delivery_id="d2")  # counted for the next notice
        await second.exhausted(other, other_tenant.id, delivery_id="d3")  # another company's: its own period
        await second.token_refused(failing, tenant.id, "invalid_client")  # another notice: its own period
        await second.token_refused(failing, tenant.id, "invalid_client")
        assert [(event, configuration, details.get("exhausted_since_last_notice"))
                for event, configuration, details in first.sent] == [("delivery.exhausted", failing, 1)]
        assert [(event, configuration) for event, configuration, _ in second.sent] == \
            [("delivery.exhausted", other), ("oauth.token_refused", failing)]

        # Once the period is over, the next notice counts what both replicas met since the last.
        monkeypatch.setattr(health, "EXHAUSTED_EVERY_SECONDS", 0.2)
        calls = 0

        async def first_announced_again():
            nonlocal calls
            calls += 1
            await first.exhausted(failing, tenant.id, delivery_id=f"d{3 + calls}")
            return first.sent[1:]

        [(_, _, details)] = await eventually(first_announced_again, interval=0.1)
        assert details["exhausted_since_last_notice"] == calls + 1  # the second replica's d2

        # A configuration deleted meanwhile: nobody to tell, and no error for the delivery.
        assert (await tenant.client.delete(f"/v1/delivery-configurations/{failing}")).status_code == 204
        gone = RecordingHealth(pool, settings)
        await gone.exhausted(failing, tenant.id, delivery_id="d-last")
        assert gone.sent == []
    finally:
        await pool.close()


async def test_replicas_claiming_a_configurations_first_notice_at_once_send_one(stack, tenant, receiver):
    """The first claim has no row to wait on yet: made first, it serializes the claims too."""
    import asyncio

    from shared.db import create_pool
    from shared.settings import Settings
    from tests.conftest import realtime_configuration, unique_path

    settings = Settings(database_url=stack.env["EM_DATABASE_URL"], kafka_bootstrap=stack.env["EM_KAFKA_BOOTSTRAP"])
    pool = await create_pool(settings.database_url, size=8)
    try:
        configuration = (await realtime_configuration(tenant, receiver.url(unique_path())))["id"]
        replicas = [RecordingHealth(pool, settings) for _ in range(8)]
        await asyncio.gather(*(replica.exhausted(configuration, tenant.id, delivery_id=f"d{n}")
                               for n, replica in enumerate(replicas)))
        [(_, _, details)] = [notice for replica in replicas for notice in replica.sent]
        pending = await pool.fetchval("SELECT pending FROM notice_claims WHERE delivery_configuration_id = $1",
                                      configuration)
        assert details["exhausted_since_last_notice"] + pending == 8  # told now, or kept for the next
    finally:
        await pool.close()
