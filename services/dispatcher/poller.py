"""Puts deliveries that wait in the database back on Kafka when they are due: retries,
throttled overflow, and republished deliveries. Several dispatcher replicas may poll at once;
`FOR UPDATE SKIP LOCKED` hands each due delivery to exactly one of them."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from shared.messages import delivered_document, delivery_message, encode, iso

log = logging.getLogger(__name__)

REQUEUED = Counter("em_dispatcher_requeued_total", "Due deliveries put back on Kafka")

DUE = """
SELECT d.id, d.company_id, d.event_id, d.subscription_id, d.delivery_configuration_id, d.attempt_count,
       d.succeeded_endpoints, e.topic, e.event_type, e.subject, e.occurred_at, e.data
FROM deliveries d JOIN events e ON e.company_id = d.company_id AND e.id = d.event_id
WHERE d.next_attempt_at <= now()
ORDER BY d.next_attempt_at
LIMIT $1
FOR UPDATE OF d SKIP LOCKED
"""


async def requeue_due(pool: asyncpg.Pool, producer: AIOKafkaProducer, topic: str, limit: int = 1000) -> int:
    async with pool.acquire() as connection, connection.transaction():
        rows = await connection.fetch(DUE, limit)
        if not rows:
            return 0
        futures = []
        for row in rows:
            event = {"id": row["event_id"], "topic": row["topic"], "event_type": row["event_type"],
                     "subject": row["subject"], "occurred_at": iso(row["occurred_at"]), "data": row["data"]}
            message = delivery_message(row["id"], row["delivery_configuration_id"], row["company_id"],
                                       delivered_document(event, row["company_id"], row["subscription_id"]),
                                       attempt=row["attempt_count"],
                                       succeeded_endpoints=list(row["succeeded_endpoints"]))
            futures.append(await producer.send(topic, encode(message), key=row["delivery_configuration_id"].encode()))
        await asyncio.gather(*futures)
        await connection.execute("UPDATE deliveries SET next_attempt_at = NULL WHERE id = ANY($1::text[])",
                                 [row["id"] for row in rows])
    REQUEUED.inc(len(rows))
    return len(rows)


async def poll_forever(pool, producer, topic: str, every: float) -> None:
    while True:
        try:
            while await requeue_due(pool, producer, topic) == 1000:
                pass
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("retry poll failed: %s", exc)
        await asyncio.sleep(every)
