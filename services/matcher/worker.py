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
from datetime import datetime
from functools import partial

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import Counter, Histogram

from services.matcher.index import SubscriptionIndex
from services.matcher.matching import recipients_of
from shared.deadletter import isolate_failures, kafka_source, retry_while_unavailable, set_aside
from shared.ids import new_id
from shared.kafka import Topics
from shared.messages import decode, delivered_document, delivery_message, encode, valid_event

log = logging.getLogger(__name__)

EVENTS_IN = Counter("em_matcher_events_total", "Events consumed")
DELIVERIES_OUT = Counter("em_matcher_deliveries_total", "Deliveries created", ["mode"])
BATCH_SECONDS = Histogram("em_matcher_batch_seconds", "Time to process one consumed batch")

INSERT_EVENTS = """
INSERT INTO events (company_id, id, topic, event_type, subject, occurred_at, received_at, data, fanned_out)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                     $7::timestamptz[], $8::jsonb[], $9::bool[])
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

UNFINISHED_FANOUT = """
SELECT d.id, d.company_id, d.event_id, d.subscription_id, d.delivery_configuration_id
FROM events e JOIN deliveries d ON d.company_id = e.company_id AND d.event_id = e.id
WHERE NOT e.fanned_out AND (e.company_id, e.id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
  AND d.status = 'queued' AND d.next_attempt_at IS NULL
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
        keys = keys or [None] * len(raw_messages)
        events, seen = [], set()
        for raw, key in zip(raw_messages, keys, strict=True):
            try:
                event = valid_event(decode(raw))
            except Exception as exc:  # whatever is wrong with it, it is this message's problem alone
                await self._set_aside(raw, key, f"undecodable event message: {type(exc).__name__}: {exc}")
                continue
            # A repeated id in the same batch: the database would keep one row, but both copies
            # would be published. The first one wins, as it does across batches.
            identity = (event["company_id"], event["id"])
            if identity not in seen:
                seen.add(identity)
                events.append((event, raw, key))
        EVENTS_IN.inc(len(events))
        await self._store_and_publish(events)

    async def _store_and_publish(self, events: list[tuple[dict, bytes, bytes | None]]) -> None:
        """The whole batch in one transaction; an event PostgreSQL refuses (or that fails in any
        other way) is found and set aside. An outage is raised: the caller retries the batch."""
        async def batch(items):
            await self._store_and_publish_batch([event for event, _, _ in items])

        async def alone(item, exc):
            _, raw, key = item
            await self._set_aside(raw, key, f"{type(exc).__name__}: {exc}")

        await isolate_failures(events, batch, alone)

    async def _store_and_publish_batch(self, events: list[dict]) -> None:
        event_rows, delivery_rows, outgoing = self._plan(events)
        if not event_rows[0]:
            return
        async with self.pool.acquire() as connection, connection.transaction():
            inserted = {(r[0], r[1]) for r in await connection.fetch(INSERT_EVENTS, *event_rows)}
            fresh = [i for i, key in enumerate(zip(delivery_rows[1], delivery_rows[2], strict=True))
                     if key in inserted]
            await connection.execute(INSERT_DELIVERIES, *[[column[i] for i in fresh] for column in delivery_rows])
            replayed = [key for key in zip(event_rows[0], event_rows[1], strict=True)
                        if key not in inserted]
            retry_fanout = await connection.fetch(UNFINISHED_FANOUT, [k[0] for k in replayed],
                                                  [k[1] for k in replayed]) if replayed else []
        # Realtime deliveries of the events stored just now, and of replayed ones whose fan-out
        # was interrupted; replays that were fully published are not published again.
        messages = [message for key, planned in outgoing.items() if key in inserted for message in planned]
        messages += self._republished(retry_fanout, events)
        await self._publish(messages)
        fanned = {(m["company_id"], m["event"]["id"]) for m in messages}
        if fanned:
            await self.pool.execute(MARK_FANNED_OUT, [k[0] for k in fanned], [k[1] for k in fanned])

    async def _set_aside(self, raw: bytes, key: bytes | None, reason: str) -> None:
        company_id = key.decode("utf-8", "replace") if key else None
        await set_aside(self.pool, service="matcher", source=kafka_source(self.topics.events), reason=reason,
                        payload=raw, company_id=company_id, key=key)

    def _plan(self, events: list[dict]):
        """Column arrays for the two inserts, and the Kafka message of each realtime delivery."""
        event_rows: list[list] = [[] for _ in range(9)]
        delivery_rows: list[list] = [[] for _ in range(6)]
        outgoing: dict[tuple[str, str], list[dict]] = {}
        realtime_count = scheduled_count = 0
        for event in events:
            recipients = recipients_of(self.index, event)
            if not recipients:
                continue
            # Parsed and encoded once, however many companies a broadcast event reaches.
            occurred_at, received_at = (datetime.fromisoformat(event["occurred_at"]),
                                        datetime.fromisoformat(event["received_at"]))
            data = orjson.dumps(event["data"]).decode()
            for recipient in recipients:
                has_realtime = any(route.realtime for route in recipient.routes)
                for column, value in zip(event_rows, (
                    recipient.company_id, event["id"], event["topic"], event["event_type"], event["subject"],
                    occurred_at, received_at, data, not has_realtime,
                ), strict=True):
                    column.append(value)
                for route in recipient.routes:
                    delivery_id = new_id("dlv")
                    status = "queued" if route.realtime else "buffered"
                    for column, value in zip(delivery_rows, (
                        delivery_id, recipient.company_id, event["id"], route.subscription_id,
                        route.configuration_id, status,
                    ), strict=True):
                        column.append(value)
                    if route.realtime:
                        realtime_count += 1
                        outgoing.setdefault((recipient.company_id, event["id"]), []).append(
                            delivery_message(delivery_id, route.configuration_id, recipient.company_id,
                                             delivered_document(event, recipient.company_id, route.subscription_id)))
                    else:
                        scheduled_count += 1
        DELIVERIES_OUT.labels("realtime").inc(realtime_count)
        DELIVERIES_OUT.labels("scheduled").inc(scheduled_count)
        return event_rows, delivery_rows, outgoing

    def _republished(self, rows, events: list[dict]) -> list[dict]:
        by_id = {event["id"]: event for event in events}
        return [
            delivery_message(row["id"], row["delivery_configuration_id"], row["company_id"],
                             delivered_document(by_id[row["event_id"]], row["company_id"], row["subscription_id"]))
            for row in rows if row["event_id"] in by_id
        ]

    async def _publish(self, messages: list[dict]) -> None:
        futures = [
            await self.producer.send(self.topics.deliveries, encode(message),
                                     key=message["delivery_configuration_id"].encode())
            for message in messages
        ]
        await asyncio.gather(*futures)

