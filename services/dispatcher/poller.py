"""Puts deliveries that wait in the database back on Kafka when they are due: retries,
throttled overflow, and republished deliveries. Several dispatcher replicas may poll at once;
`FOR UPDATE SKIP LOCKED` hands each due delivery to exactly one of them."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from shared.deadletter import is_unavailable, set_aside
from shared.messages import PINNED_SQL, delivered_document, delivery_key, delivery_message, encode, iso
from shared.statuses import DeliveryStatus

log = logging.getLogger(__name__)

REQUEUED = Counter("em_dispatcher_requeued_total", "Due deliveries put back on Kafka")

DUE = f"""
SELECT d.id, d.company_id, d.event_id, d.subscription_id, d.delivery_configuration_id, d.attempt_count,
       d.succeeded_endpoints, e.topic, e.event_type, e.subject, e.occurred_at, e.data, e.trace_parent,
       {PINNED_SQL} AS pinned
FROM deliveries d JOIN events e ON e.company_id = d.company_id AND e.id = d.event_id
LEFT JOIN delivery_configurations c ON c.id = d.delivery_configuration_id
WHERE d.next_attempt_at <= now()
ORDER BY d.next_attempt_at
LIMIT $1
FOR UPDATE OF d SKIP LOCKED
"""

MARK_UNQUEUEABLE = f"""
UPDATE deliveries SET status = '{DeliveryStatus.FAILED}', last_error = $2, updated_at = now() WHERE id = $1
"""


async def requeue_due(pool: asyncpg.Pool, producer: AIOKafkaProducer, topic: str, limit: int = 1000) -> int:
    async with pool.acquire() as connection, connection.transaction():
        rows = await connection.fetch(DUE, limit)
        if not rows:
            return 0
        sends = [_send(producer, topic, row) for row in rows]
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
        unavailable = next((o for o in outcomes if isinstance(o, BaseException) and is_unavailable(o)), None)
        if unavailable is not None:
            raise unavailable  # the transaction rolls back; every row is tried again on the next poll
        refused = [(row, outcome) for row, outcome in zip(rows, outcomes, strict=True)
                   if isinstance(outcome, BaseException)]
        await connection.execute("UPDATE deliveries SET next_attempt_at = NULL WHERE id = ANY($1::text[])",
                                 [row["id"] for row in rows])
        for row, error in refused:  # e.g. an event too large for the broker: it would block every poll
            reason = f"{type(error).__name__}: {error}"
            await connection.execute(MARK_UNQUEUEABLE, row["id"], f"could not be queued for delivery: {reason}"[:500])
            await set_aside(pool, service="dispatcher", source=f"delivery:{row['id']}", company_id=row["company_id"],
                            reason=reason, payload=orjson.dumps(dict(row), default=str))
    REQUEUED.inc(len(rows) - len(refused))
    return len(rows)


async def _send(producer: AIOKafkaProducer, topic: str, row) -> None:
    event = {"id": row["event_id"], "topic": row["topic"], "event_type": row["event_type"],
             "subject": row["subject"], "occurred_at": iso(row["occurred_at"]), "data": row["data"]}
    message = delivery_message(row["id"], row["delivery_configuration_id"], row["company_id"],
                               delivered_document(event, row["company_id"], row["subscription_id"]),
                               attempt=row["attempt_count"], succeeded_endpoints=list(row["succeeded_endpoints"]),
                               traceparent=row["trace_parent"])  # a retry stays in the event's trace
    await (await producer.send(topic, encode(message), key=delivery_key(message, bool(row["pinned"]))))


async def poll_forever(pool, producer, topic: str, every: float) -> None:
    while True:
        try:
            while await requeue_due(pool, producer, topic) == 1000:
                pass
        except Exception as exc:
            if not is_unavailable(exc):
                log.exception("retry poll failed")
            else:
                log.warning("retry poll failed: %s", exc)
        await asyncio.sleep(every)
