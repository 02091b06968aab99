"""Dispatcher alone: deliveries already on its Kafka topic, one fast local receiver, every
attempt recorded in PostgreSQL. And throttling: 20 requests/s for 30 s beside an unthrottled
configuration."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import orjson

from shared.ids import new_id
from shared.messages import delivery_message, encode
from tests.bench.env import (
    cpu_seconds,
    create_company,
    create_configuration,
    create_subscription,
    peak_rss_mb,
    wait_until,
)

DELIVERIES = 10_000  # 20,000 before the end-to-end section joined make bench


async def seed_deliveries(env, pool, producer, configuration_id: str, company_id: str, subscription_id: str,
                          count: int) -> None:
    now = datetime.now(UTC)
    event_ids = [new_id("evt") for _ in range(count)]
    delivery_ids = [new_id("dlv") for _ in range(count)]
    data = orjson.dumps({"text": "x" * 120}).decode()
    await pool.execute(
        "INSERT INTO events (company_id, id, topic, event_type, subject, occurred_at, received_at, data, fanned_out) "
        "SELECT $1, id, 'SCG-Message', 'message.sent', NULL, $3, $3, $4::jsonb, true FROM unnest($2::text[]) id",
        company_id, event_ids, now, data)
    await pool.execute(
        "INSERT INTO deliveries (id, company_id, event_id, subscription_id, delivery_configuration_id, status, "
        "attempt_count, succeeded_endpoints, created_at, updated_at) "
        "SELECT d, $1, e, $4, $5, 'queued', 0, '{}', now(), now() FROM unnest($2::text[], $3::text[]) AS t(d, e)",
        company_id, delivery_ids, event_ids, subscription_id, configuration_id)
    occurred = now.isoformat().replace("+00:00", "Z")
    futures = []
    for delivery_id, event_id in zip(delivery_ids, event_ids, strict=True):
        document = {"id": event_id, "topic": "SCG-Message", "event_type": "message.sent", "company_id": company_id,
                    "subject": None, "occurred_at": occurred, "data": {"text": "x" * 120},
                    "subscription_id": subscription_id}
        message = delivery_message(delivery_id, configuration_id, company_id, document)
        futures.append(await producer.send(env.topics.deliveries, encode(message), key=configuration_id.encode()))
    await asyncio.gather(*futures)


async def delivered_count(pool, configuration_id: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM deliveries WHERE delivery_configuration_id = $1 "
                               "AND status = 'delivered'", configuration_id)


async def dispatcher_throughput(env) -> dict:
    pool, producer = await env.pool(), await env.producer()
    company = await create_company(pool)
    configuration = await create_configuration(pool, company, url=env.receiver_url("/dispatch"))
    subscription = await create_subscription(pool, company, configuration)
    await seed_deliveries(env, pool, producer, configuration, company, subscription, DELIVERIES)
    env.stack.start_service("dispatcher")
    first = await wait_until(lambda: _first_delivery_time(pool, configuration), timeout=60, interval=0.05)
    cpu_at_first = cpu_seconds(env.stack.services["dispatcher"].process)
    await wait_until(lambda: _all_delivered(pool, configuration, DELIVERIES), timeout=300, interval=0.1)
    finished = time.perf_counter()
    cpu = cpu_seconds(env.stack.services["dispatcher"].process) - cpu_at_first
    attempts = await pool.fetchval("SELECT count(*) FROM delivery_attempts WHERE company_id = $1", company)
    received = sorted(env.arrivals()["/dispatch"])
    rss = peak_rss_mb(env.stack.services["dispatcher"].process)
    await producer.stop()
    await pool.close()
    seconds = finished - first
    return {"deliveries": DELIVERIES, "seconds": round(seconds, 2),
            "deliveries_per_second": round(DELIVERIES / seconds),  # first to last recorded as delivered
            "requests_per_second_at_receiver": round(len(received) / (received[-1] - received[0])),
            "attempts_recorded": attempts, "dispatcher_peak_rss_mb": rss,
            # CPU per delivery is what a busy machine does not distort much (throughput it does).
            "dispatcher_cpu_ms_per_delivery": round(cpu * 1000 / DELIVERIES, 3)}


async def _first_delivery_time(pool, configuration_id):
    return time.perf_counter() if await delivered_count(pool, configuration_id) > 0 else None


async def _all_delivered(pool, configuration_id, count):
    return await delivered_count(pool, configuration_id) >= count


def most_in_any_window(times: list[float], window: float) -> int:
    times, best, start = sorted(times), 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def throttle_beside_unthrottled(env, alone_rate: float) -> dict:
    """The dispatcher service is already running (from the throughput run)."""
    pool, producer = await env.pool(), await env.producer()
    company = await create_company(pool)
    throttled = await create_configuration(pool, company, url=env.receiver_url("/throttled", second=True),
                                           throttle={"max_requests": 20, "per_seconds": 1})
    free = await create_configuration(pool, company, url=env.receiver_url("/free"))
    throttled_subscription = await create_subscription(pool, company, throttled)
    free_subscription = await create_subscription(pool, company, free)
    await seed_deliveries(env, pool, producer, throttled, company, throttled_subscription, 700)
    started = time.time()
    await seed_deliveries(env, pool, producer, free, company, free_subscription, 10_000)
    await wait_until(lambda: _all_delivered(pool, free, 10_000), timeout=120)
    free_done = time.time()
    await asyncio.sleep(max(0.0, started + 33 - time.time()))
    arrivals = env.arrivals()
    throttled_times = sorted(env.arrivals(second=True).get("/throttled", []))
    first = throttled_times[0]
    in_30s = [t for t in throttled_times if t < first + 30]
    free_times = sorted(arrivals.get("/free", []))
    await producer.stop()
    await pool.close()
    free_rate = 10_000 / (free_times[-1] - free_times[0])
    return {"throttled_in_30s": len(in_30s), "max_in_any_1s_window": most_in_any_window(throttled_times, 1.0),
            "unthrottled_per_second_beside": round(free_rate), "unthrottled_alone_per_second": round(alone_rate),
            "unthrottled_finished_after_s": round(free_done - started, 1)}
