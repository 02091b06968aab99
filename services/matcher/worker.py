"""The matcher's loop: events from Kafka -> events and deliveries in PostgreSQL (one
transaction per batch) -> realtime deliveries to Kafka -> offsets committed.

A message that cannot be decoded, matched or stored is set aside (shared/deadletter.py) and
the batch goes on without it; an unavailable database or broker is waited out instead.

Crash safety: an event row is written with `fanned_out = false` when it has realtime
deliveries, and flipped once they are on Kafka. If the process dies in between, Kafka hands the
batch out again; the events already exist, and those still not fanned out have their queued
deliveries published again (the dispatcher tolerates the rare duplicate; the receiver sees the
same `webhook-id`)."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import Counter, Histogram

from services.matcher.index import SubscriptionIndex
from services.matcher.plan import BatchPlan, EventKey, Incoming, plan_batch, read_batch
from shared.db import columns
from shared.deadletter import isolate_failures, kafka_source, retry_while_unavailable, set_aside
from shared.kafka import Topics, send_all
from shared.messages import PINNED_SQL, delivered_document, delivery_key, delivery_message, encode
from shared.statuses import DeliveryStatus

log = logging.getLogger(__name__)

EVENTS_IN = Counter("em_matcher_events_total", "Events consumed")
DELIVERIES_OUT = Counter("em_matcher_deliveries_total", "Deliveries created", ["mode"])
BATCH_SECONDS = Histogram("em_matcher_batch_seconds", "Time to process one consumed batch")

INSERT_EVENTS = """
INSERT INTO events (company_id, id, topic, event_type, subject, occurred_at, received_at, data, fanned_out,
                    trace_parent)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                     $7::timestamptz[], $8::jsonb[], $9::bool[], $10::text[])
ON CONFLICT DO NOTHING
RETURNING company_id, id
"""

INSERT_DELIVERIES = """
INSERT INTO deliveries (id, company_id, event_id, subscription_id, delivery_configuration_id, status,
                        attempt_count, succeeded_endpoints, created_at, updated_at)
SELECT d.*, 0, '{}'::text[], now(), now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS d
ON CONFLICT DO NOTHING
"""

UNFINISHED_FANOUT = f"""
SELECT d.id, d.company_id, d.event_id, d.subscription_id, d.delivery_configuration_id, e.trace_parent,
       {PINNED_SQL} AS pinned
FROM events e JOIN deliveries d ON d.company_id = e.company_id AND d.event_id = e.id
LEFT JOIN delivery_configurations c ON c.id = d.delivery_configuration_id
WHERE NOT e.fanned_out AND (e.company_id, e.id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
  AND d.status = '{DeliveryStatus.QUEUED}' AND d.next_attempt_at IS NULL
"""

MARK_FANNED_OUT = """
UPDATE events SET fanned_out = true
WHERE (company_id, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""


class Matcher:
    def __init__(self, index: SubscriptionIndex, pool: asyncpg.Pool, consumer: AIOKafkaConsumer,
                 producer: AIOKafkaProducer, topics: Topics):
        self.index = index
        self.pool = pool
        self.consumer = consumer
        self.producer = producer
        self.topics = topics

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            batches = await self.consumer.getmany(timeout_ms=200, max_records=2000)
            records = [record for partition in batches.values() for record in partition]
            if not records:
                continue
            with BATCH_SECONDS.time():
                values, keys = [r.value for r in records], [r.key for r in records]
                await retry_while_unavailable("matcher", partial(self.process, values, keys))
            # Durable in PostgreSQL and on Kafka (or set aside): now the offsets may move.
            await self.consumer.commit({tp: part[-1].offset + 1 for tp, part in batches.items()})

    async def process(self, raw_messages: list[bytes], keys: list[bytes | None] | None = None) -> None:
        """Store and fan out a batch. A message that cannot be decoded, matched or stored is set
        aside with its reason; the rest of the batch goes on."""
        events, rejected = read_batch(raw_messages, keys or [None] * len(raw_messages))
        for message in rejected:
            await self._set_aside(message.raw, message.key, message.reason)
        EVENTS_IN.inc(len(events))
        # The whole batch in one transaction; an event PostgreSQL refuses (or that fails in any
        # other way) is found and set aside. An outage is raised: the caller retries the batch.
        await isolate_failures(events, self._store_and_publish, self._set_aside_alone)

    async def _store_and_publish(self, batch: list[Incoming]) -> None:
        events = [incoming.event for incoming in batch]
        plan = plan_batch(self.index, events)
        DELIVERIES_OUT.labels("realtime").inc(plan.realtime_count)
        DELIVERIES_OUT.labels("scheduled").inc(plan.scheduled_count)
        if not plan.events:
            return
        inserted, interrupted = await self._store(plan)
        # Realtime deliveries of the events stored just now, and of replayed ones whose fan-out
        # was interrupted; replays that were fully published are not published again.
        messages = [keyed for key, planned in plan.outgoing.items() if key in inserted for keyed in planned]
        messages += self._republished(interrupted, events)
        await send_all(self.producer, self.topics.deliveries, [(key, encode(m)) for key, m in messages])
        fanned = {(m["company_id"], m["event"]["id"]) for _, m in messages}
        if fanned:
            await self.pool.execute(MARK_FANNED_OUT, *columns(list(fanned), 2))

    async def _store(self, plan: BatchPlan) -> tuple[set[EventKey], list]:
        """Insert the events new to the database and their deliveries. Returns the events
        inserted, and the queued deliveries of the others whose fan-out never finished."""
        async with self.pool.acquire() as connection, connection.transaction():
            inserted = {(r[0], r[1]) for r in await connection.fetch(INSERT_EVENTS, *columns(plan.events, 10))}
            fresh = [row for row in plan.deliveries if (row.company_id, row.event_id) in inserted]
            await connection.execute(INSERT_DELIVERIES, *columns(fresh, 6))
            replayed = [(row.company_id, row.id) for row in plan.events if (row.company_id, row.id) not in inserted]
            if not replayed:
                return inserted, []
            return inserted, await connection.fetch(UNFINISHED_FANOUT, *columns(replayed, 2))

    async def _set_aside_alone(self, incoming: Incoming, error: Exception) -> None:
        await self._set_aside(incoming.raw, incoming.key, f"{type(error).__name__}: {error}")

    async def _set_aside(self, raw: bytes, key: bytes | None, reason: str) -> None:
        company_id = key.decode("utf-8", "replace") if key else None
        await set_aside(self.pool, service="matcher", source=kafka_source(self.topics.events), reason=reason,
                        payload=raw, company_id=company_id, key=key)

    def _republished(self, rows, events: list[dict]) -> list[tuple[bytes | None, dict]]:
        by_id = {event["id"]: event for event in events}
        republished = []
        for row in rows:
            if row["event_id"] not in by_id:
                continue
            message = delivery_message(
                row["id"], row["delivery_configuration_id"], row["company_id"],
                delivered_document(by_id[row["event_id"]], row["company_id"], row["subscription_id"]),
                traceparent=row["trace_parent"])  # the one stored when it was first matched
            republished.append((delivery_key(message, bool(row["pinned"])), message))
        return republished

