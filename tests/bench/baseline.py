"""The bare pipeline: one aiokafka producer -> broker (6 partitions) -> one consumer -> aiohttp
POST (64 in flight) -> the receiver. No database, no logic: the floor the services are judged
against, measured in the same run on the same machine."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.kafka import make_consumer

EVENTS = 20_000
IN_FLIGHT = 64


async def bare_pipeline(env) -> dict:
    topic = "bench.bare"
    admin = AIOKafkaAdminClient(bootstrap_servers=env.settings.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    await admin.close()
    producer = await env.producer()
    body = b'{"id":"evt","topic":"SCG-Message","event_type":"message.sent","data":{"text":"' + b"x" * 120 + b'"}}'
    consumer = make_consumer(env.settings, "bench-bare", topic)
    await consumer.start()
    url = env.receiver_url("/bare")
    started = time.perf_counter()
    futures = [await producer.send(topic, body, key=str(i % 64).encode()) for i in range(EVENTS)]
    await asyncio.gather(*futures)
    produced = time.perf_counter() - started
    delivered = 0
    limit = asyncio.Semaphore(IN_FLIGHT)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as http:
        async def post(value: bytes) -> None:
            nonlocal delivered
            async with limit, http.post(url, data=value) as response:
                await response.read()
                delivered += 1

        tasks, consumed = set(), 0
        deadline = time.perf_counter() + 120
        while consumed < EVENTS and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=1000)
            for records in batch.values():
                for record in records:
                    task = asyncio.create_task(post(record.value))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    consumed += 1
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        if delivered != EVENTS:
            raise RuntimeError(f"bare pipeline delivered {delivered} of {EVENTS}")
    elapsed = time.perf_counter() - started
    await consumer.stop()
    await producer.stop()
    return {"events": EVENTS, "seconds": round(elapsed, 2), "events_per_second": round(EVENTS / elapsed),
            "produce_seconds": round(produced, 2)}
