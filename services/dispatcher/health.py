"""Endpoint health: which endpoints have been failing, for how long, and what to do about it.

The recorder keeps `endpoint_health` from the attempts it writes (`health_rows`, upserted in
the same transaction): `failing_since` is the first failure after the endpoint's last success,
NULL while it is healthy. A watcher in every dispatcher replica (`Health.run`, rows taken with
SKIP LOCKED so replicas share them) then, per row (`next_step`, pure):
- announces `endpoint.failing` once per failing spell at each configured threshold;
- disables the endpoint once its failures span `endpoint_disable_after_seconds` (a burst of
  failures long ago followed by silence is not continuous failure);
- announces `endpoint.recovered` when an announced endpoint succeeds again.
A 410 Gone disables the endpoint at once (`Health.disable`). Disabling writes a change
notification, so every replica stops sending to it, and starts the endpoint's health afresh:
re-enabled, it gets a whole new spell before it could be disabled again."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from services.dispatcher.sender import Attempt
from shared.deadletter import is_unavailable
from shared.operations import OperationalEvent, emit, operational_event

log = logging.getLogger(__name__)

UPSERT_HEALTH = """
INSERT INTO endpoint_health AS h (delivery_configuration_id, endpoint_id, company_id, url, failing_since,
                                  last_failure_at, last_success_at, last_error, failures)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
                     $7::timestamptz[], $8::text[], $9::int[])
ON CONFLICT (delivery_configuration_id, endpoint_id) DO UPDATE SET
    url = EXCLUDED.url,
    last_success_at = GREATEST(h.last_success_at, EXCLUDED.last_success_at),
    last_failure_at = GREATEST(h.last_failure_at, EXCLUDED.last_failure_at),
    last_error = COALESCE(EXCLUDED.last_error, h.last_error),
    -- Replicas write out of order: a result older than what is recorded does not undo it.
    -- (Both CASEs read the row as it was.)
    failing_since = CASE
        WHEN EXCLUDED.failing_since IS NULL THEN  -- its last attempt here succeeded...
            CASE WHEN h.last_failure_at > EXCLUDED.last_success_at THEN h.failing_since END  -- ...unless failed since
        WHEN h.last_success_at >= EXCLUDED.last_failure_at THEN h.failing_since  -- failures older than a success
        WHEN EXCLUDED.last_success_at IS NOT NULL THEN EXCLUDED.failing_since  -- a success, then failing again
        ELSE COALESCE(h.failing_since, EXCLUDED.failing_since) END,
    failures = CASE
        WHEN EXCLUDED.failing_since IS NULL THEN
            CASE WHEN h.last_failure_at > EXCLUDED.last_success_at THEN h.failures ELSE 0 END
        WHEN h.last_success_at >= EXCLUDED.last_failure_at THEN h.failures
        WHEN EXCLUDED.last_success_at IS NOT NULL THEN EXCLUDED.failures
        WHEN h.failing_since IS NULL THEN EXCLUDED.failures
        ELSE h.failures + EXCLUDED.failures END
"""

WATCHED = """
SELECT h.delivery_configuration_id, h.endpoint_id, h.company_id, h.url, h.failing_since, h.last_failure_at,
       h.last_error, h.failures, h.announced_seconds, true AS active
FROM endpoint_health h JOIN delivery_configurations c ON c.id = h.delivery_configuration_id
WHERE (h.failing_since IS NOT NULL OR h.announced_seconds > 0)
  -- An endpoint that is off (disabled, or set inactive) is not watched until it is on again.
  -- (CASE keeps a malformed row an older release stored from failing the query for everyone.)
  AND CASE WHEN jsonb_typeof(c.endpoints) = 'array'
           THEN EXISTS (SELECT 1 FROM jsonb_array_elements(c.endpoints) e
                        WHERE e->>'id' = h.endpoint_id AND e->>'active' = 'true')
           ELSE false END
ORDER BY h.checked_at NULLS FIRST  -- the least recently checked first: no endpoint is starved
LIMIT 1000
FOR UPDATE OF h SKIP LOCKED
"""

CHECKED = """
UPDATE endpoint_health SET checked_at = now()
WHERE (delivery_configuration_id, endpoint_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""

# The endpoint (if still active) marked inactive with why and when; its health starts afresh.
DISABLE = """
WITH disabled AS (
    UPDATE delivery_configurations SET updated_at = now(), endpoints = (
        SELECT jsonb_agg(CASE WHEN e->>'id' = $2
                              THEN e || jsonb_build_object(
                                  'active', false, 'disabled_reason', $3::text, 'disabled_at', now(),
                                  'failing_since', (SELECT failing_since FROM endpoint_health
                                                    WHERE delivery_configuration_id = $1 AND endpoint_id = $2))
                              ELSE e END ORDER BY position)
        FROM jsonb_array_elements(endpoints) WITH ORDINALITY AS t(e, position))
    WHERE id = $1 AND EXISTS (SELECT 1 FROM jsonb_array_elements(endpoints) e
                              WHERE e->>'id' = $2 AND (e->>'active')::boolean)
    RETURNING company_id
), announced AS (
    INSERT INTO change_outbox (kind, company_id, created_at)
    SELECT 'delivery_configurations', company_id, now() FROM disabled
)
UPDATE endpoint_health SET failing_since = NULL, announced_seconds = 0
WHERE delivery_configuration_id = $1 AND endpoint_id = $2 AND EXISTS (SELECT 1 FROM disabled)
RETURNING (SELECT company_id FROM disabled)
"""

# The period's notice, claimed for one replica: every replica sends a configuration's
# deliveries. The row is made first, so concurrent claims (even the first one) wait on its lock.
ENSURE_NOTICE_ROW = """
INSERT INTO notice_claims (delivery_configuration_id, event_type, sent_at, pending)
VALUES ($1, $2, '-infinity', 0) ON CONFLICT DO NOTHING
"""
LOCK_NOTICE_ROW = """
SELECT sent_at > now() - make_interval(secs => $3) AS recent, pending FROM notice_claims
WHERE delivery_configuration_id = $1 AND event_type = $2 FOR UPDATE
"""
KEEP_FOR_NEXT_NOTICE = """
UPDATE notice_claims SET pending = pending + $3 WHERE delivery_configuration_id = $1 AND event_type = $2
"""
NOTICE_SENT = """
UPDATE notice_claims SET sent_at = now(), pending = 0 WHERE delivery_configuration_id = $1 AND event_type = $2
"""

ANNOUNCED = """
UPDATE endpoint_health SET announced_seconds = $3 WHERE delivery_configuration_id = $1 AND endpoint_id = $2
"""

# How often a configuration's refused OAuth credentials and exhausted deliveries are announced:
# a long outage must not send a company one notice per delivery.
TOKEN_REFUSED_EVERY_SECONDS = 3600.0
EXHAUSTED_EVERY_SECONDS = 60.0
# Failures a spell needs, beside its length, before the endpoint is disabled: two failures
# days apart are not continuous failure.
MIN_FAILURES_TO_DISABLE = 5


def health_rows(results) -> list[tuple]:
    """`results`: (configuration id, company id, attempts) per delivery result of a flush. One
    row per endpoint for UPSERT_HEALTH, sorted so concurrent flushes lock rows in one order."""
    seen: dict[tuple[str, str], list] = {}
    for configuration_id, company_id, attempts in results:
        for attempt in attempts:
            seen.setdefault((configuration_id, attempt.endpoint_id), [company_id, attempt.url, []])[2].append(attempt)
    rows = []
    for (configuration_id, endpoint_id), (company_id, url, attempts) in sorted(seen.items()):
        rows.append((configuration_id, endpoint_id, company_id, url, *_spell(attempts)))
    return rows


def _spell(attempts: list[Attempt]) -> tuple:
    """(failing_since, last_failure_at, last_success_at, last_error, failures since the last
    success) of one endpoint's attempts."""
    successes = [a.started_at for a in attempts if a.succeeded]
    failures = sorted((a for a in attempts if not a.succeeded), key=lambda a: a.started_at)
    last_success = max(successes, default=None)
    spell = [a.started_at for a in failures if last_success is None or a.started_at > last_success]
    last_failure = failures[-1] if failures else None
    return (spell[0] if spell else None, last_failure and last_failure.started_at, last_success,
            last_failure and last_failure.error, len(spell))


@dataclass(frozen=True, slots=True)
class Announce:
    event_type: OperationalEvent
    announced_seconds: float


@dataclass(frozen=True, slots=True)
class Disable:
    reason: str


def next_step(row, now: datetime, disable_after: float, thresholds: list[float]) -> Announce | Disable | None:
    """What to do about one watched endpoint (pure; tests/test_endpoint_health.py tables it)."""
    if row["failing_since"] is None:
        return Announce(OperationalEvent.ENDPOINT_RECOVERED, 0.0) if row["announced_seconds"] > 0 else None
    if not row["active"]:
        return None
    failing_for = (now - row["failing_since"]).total_seconds()
    span = (row["last_failure_at"] - row["failing_since"]).total_seconds()
    if span >= disable_after and row["failures"] >= MIN_FAILURES_TO_DISABLE:
        return Disable(f"failed without a success for {_duration(span)} (last error: {row['last_error']})")
    reached = [t for t in thresholds if row["announced_seconds"] < t <= failing_for]
    return Announce(OperationalEvent.ENDPOINT_FAILING, max(reached)) if reached else None


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"


class Health:
    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, events_topic: str, settings):
        self.pool = pool
        self.producer = producer
        self.events_topic = events_topic
        self.disable_after = settings.endpoint_disable_after_seconds
        self.thresholds = sorted(settings.endpoint_failing_thresholds)
        self._last_notice: dict[tuple[OperationalEvent, str], float] = {}
        self._unannounced: dict[tuple[OperationalEvent, str], int] = {}

    async def run(self, every: float) -> None:
        while True:
            try:
                await self.check_once()
            except Exception as exc:
                if not is_unavailable(exc):
                    log.exception("endpoint health check failed")
            await asyncio.sleep(every)

    async def check_once(self) -> None:
        now = datetime.now(UTC)
        notices = []
        async with self.pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(WATCHED)
            await connection.execute(CHECKED, [r["delivery_configuration_id"] for r in rows],
                                     [r["endpoint_id"] for r in rows])
            for row in rows:
                try:
                    async with connection.transaction():  # a savepoint: one row's failure is its own
                        notice = await self._act_on(connection, row, now)
                except Exception as exc:
                    if is_unavailable(exc):
                        raise
                    log.warning("endpoint health of %s/%s not handled: %s", row["delivery_configuration_id"],
                                row["endpoint_id"], exc)
                    continue
                if notice is not None:
                    notices.append(notice)
        for notice in notices:  # once the state that caused them is committed
            await emit(self.producer, self.events_topic, notice)

    async def _act_on(self, connection, row, now: datetime) -> dict | None:
        """Carry out the next step for one endpoint; the notice to send once committed, if any."""
        step = next_step(row, now, self.disable_after, self.thresholds)
        if isinstance(step, Disable):
            disabled = await connection.fetchval(DISABLE, row["delivery_configuration_id"], row["endpoint_id"],
                                                 step.reason)
            return self._notice(OperationalEvent.ENDPOINT_DISABLED, row, reason=step.reason) if disabled else None
        if step is None:
            return None
        key = (row["delivery_configuration_id"], row["endpoint_id"])
        await connection.execute(ANNOUNCED, *key, step.announced_seconds)
        return self._notice(step.event_type, row, failing_since=row["failing_since"], last_error=row["last_error"])

    async def disable(self, configuration_id: str, company_id: str, endpoint_id: str, url: str, reason: str) -> None:
        """Disable at once (a 410 Gone), and tell the company."""
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO endpoint_health (delivery_configuration_id, endpoint_id, company_id, url) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", configuration_id, endpoint_id, company_id, url)
            disabled = await connection.fetchval(DISABLE, configuration_id, endpoint_id, reason)
        if disabled:
            await self.notify(OperationalEvent.ENDPOINT_DISABLED, company_id, configuration_id,
                              endpoint_id=endpoint_id, url=url, reason=reason)

    async def token_refused(self, configuration_id: str, company_id: str, error: str) -> None:
        """Told at most once an hour per configuration: every delivery meets it."""
        event_type = OperationalEvent.OAUTH_TOKEN_REFUSED
        if self._due(event_type, configuration_id, TOKEN_REFUSED_EVERY_SECONDS):
            if await self._claim(event_type, configuration_id, TOKEN_REFUSED_EVERY_SECONDS, 0) is not None:
                await self.notify(event_type, company_id, configuration_id, error=error)

    async def exhausted(self, configuration_id: str, company_id: str, **details) -> None:
        """At most once a minute per configuration, with how many deliveries used up their
        retries since the last notice, on any replica."""
        key = (OperationalEvent.DELIVERY_EXHAUSTED, configuration_id)
        self._unannounced[key] = self._unannounced.get(key, 0) + 1
        if not self._due(*key, EXHAUSTED_EVERY_SECONDS):
            return
        counted = self._unannounced.pop(key)
        others = await self._claim(*key, EXHAUSTED_EVERY_SECONDS, counted)
        if others is not None:
            await self.notify(OperationalEvent.DELIVERY_EXHAUSTED, company_id, configuration_id,
                              exhausted_since_last_notice=counted + others, **details)

    async def _claim(self, event_type: OperationalEvent, configuration_id: str, every: float,
                     counted: int) -> int | None:
        """Once this replica's own period is over (so it asks at most once a period): what other
        replicas counted since the last notice, when no replica has sent one within `every` and
        this one sends it now; None when another has (then `counted` waits for the next)."""
        key = (configuration_id, str(event_type))
        try:
            async with self.pool.acquire() as connection, connection.transaction():
                await connection.execute(ENSURE_NOTICE_ROW, *key)
                row = await connection.fetchrow(LOCK_NOTICE_ROW, *key, every)
                if row["recent"]:
                    await connection.execute(KEEP_FOR_NEXT_NOTICE, *key, counted)
                    return None
                await connection.execute(NOTICE_SENT, *key)
                return row["pending"]
        except asyncpg.ForeignKeyViolationError:
            return None  # the configuration is gone: nobody to tell
        except Exception as exc:  # a notice must never fail or repeat the delivery: sent unclaimed
            log.warning("could not claim the %s notice of %s: %s", event_type, configuration_id, exc)
            return 0

    def _due(self, event_type: OperationalEvent, configuration_id: str, every: float) -> bool:
        now = time.monotonic()
        if len(self._last_notice) > 10_000:  # forget what is past its period, so this stays small
            self._last_notice = {k: t for k, t in self._last_notice.items() if now - t < TOKEN_REFUSED_EVERY_SECONDS}
        last = self._last_notice.get((event_type, configuration_id))
        if last is not None and now - last < every:
            return False
        self._last_notice[(event_type, configuration_id)] = now
        return True

    async def notify(self, event_type: OperationalEvent, company_id: str, configuration_id: str, **details) -> None:
        await emit(self.producer, self.events_topic, operational_event(event_type, company_id, configuration_id,
                                                                       **details))

    @staticmethod
    def _notice(event_type: OperationalEvent, row, **details) -> dict:
        values = {key: value.isoformat() if isinstance(value, datetime) else value for key, value in details.items()}
        return operational_event(event_type, row["company_id"], row["delivery_configuration_id"],
                                 endpoint_id=row["endpoint_id"], url=row["url"], **values)
