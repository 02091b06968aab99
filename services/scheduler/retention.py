"""Retention: events (with their deliveries), attempts, ingest's idempotency keys and audit
records older than `EM_RETENTION_DAYS` are purged in batches, so the purge never holds long locks or one huge
transaction. Events whose deliveries are still waiting (queued, pending_retry, buffered) are
kept until they settle."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import Counter

from shared.statuses import UNSETTLED, sql_list

log = logging.getLogger(__name__)

PURGED = Counter("em_retention_purged_total", "Rows removed by retention", ["table"])
BATCH = 5000

PURGE_ATTEMPTS = """
DELETE FROM delivery_attempts WHERE id IN (
    SELECT id FROM delivery_attempts WHERE started_at < $1 LIMIT $2)
"""

# An event id can be reused once the event it named is gone.
PURGE_INGEST_IDS = """
DELETE FROM ingest_ids WHERE (company_key, id) IN (
    SELECT company_key, id FROM ingest_ids WHERE received_at < $1 LIMIT $2)
"""

# The audit log is append-only (its trigger refuses UPDATE) but is retained like events.
PURGE_AUDIT = """
DELETE FROM audit_log WHERE id IN (
    SELECT id FROM audit_log WHERE occurred_at < $1 LIMIT $2)
"""

# A rate-limit bucket idle this long is full again (shared/ratelimit.py), the same as no row.
PURGE_IDLE_BUCKETS = "DELETE FROM rate_limit_buckets WHERE refilled_at < now() - interval '1 day'"

PURGE_EVENTS = f"""
WITH doomed AS (
    SELECT e.company_id, e.id FROM events e
    WHERE e.received_at < $1 AND NOT EXISTS (
        SELECT 1 FROM deliveries d WHERE d.company_id = e.company_id AND d.event_id = e.id
          AND d.status IN ({sql_list(UNSETTLED)}))
    LIMIT $2
), gone_deliveries AS (
    DELETE FROM deliveries d USING doomed
    WHERE d.company_id = doomed.company_id AND d.event_id = doomed.id
)
DELETE FROM events e USING doomed WHERE e.company_id = doomed.company_id AND e.id = doomed.id
"""


async def purge_older_than(pool: asyncpg.Pool, cutoff: datetime) -> dict[str, int]:
    totals = {"delivery_attempts": 0, "events": 0, "ingest_ids": 0, "audit_log": 0}
    for table, statement in (("delivery_attempts", PURGE_ATTEMPTS), ("events", PURGE_EVENTS),
                             ("ingest_ids", PURGE_INGEST_IDS), ("audit_log", PURGE_AUDIT)):
        while True:
            result = await pool.execute(statement, cutoff, BATCH)
            removed = int(result.split()[-1])
            totals[table] += removed
            PURGED.labels(table).inc(removed)
            if removed < BATCH:
                break
    await pool.execute(PURGE_IDLE_BUCKETS)
    return totals


async def purge_forever(pool: asyncpg.Pool, retention_days: int, every: float) -> None:
    while True:
        try:
            cutoff = datetime.now(UTC) - timedelta(days=retention_days)
            totals = await purge_older_than(pool, cutoff)
            if any(totals.values()):
                log.info("retention purged %s", totals)
        except Exception as exc:  # an outage or anything else: try again next time, never stop the scheduler
            log.warning("retention purge failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(every)
