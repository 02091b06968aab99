"""The bare pipeline: one aiokafka producer -> broker (6 partitions) -> one consumer -> aiohttp
POST (64 in flight) -> the receiver process. No database, no logic: the floor the services are
judged against, measured in the same run on the same machine.

Saturated: every event produced as fast as the producer takes them while the consumer delivers;
the time runs from the first send to the last arrival at the receiver. Paced (`rate`): batches of
100 produced on an open-loop schedule, and each event's latency runs from the broker's
acknowledgement of its batch (what ingest's 202 stands for) to its arrival."""

from __future__ import annotations

import asyncio
import itertools
import os
import time

import aiohttp
import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.kafka import make_consumer
from tests.bench.measure import arrival_figures, cpu_snapshot, cpu_used

EVENTS = 20_000
BENCH_PROCESS = "bench process (producer, consumer, client)"
IN_FLIGHT = 64
BATCH = 100
_runs = itertools.count(1)


def _body(prefix: str, n: int) -> bytes:
    return orjson.dumps({"id": f"{prefix}-{n}", "topic": "SCG-Message", "event_type": "message.sent",
                         "data": {"text": "x" * 120, "n": n}})


async def bare_pipeline(env, events: int = EVENTS, rate: float | None = None) -> dict:
    run = next(_runs)
    topic, prefix, path = f"bench.bare.{run}", f"bare{run}", f"/bare/{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=env.settings.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    await admin.close()
    producer = await env.producer()
    consumer = make_consumer(env.settings, f"bench-bare-{run}", topic)
    await consumer.start()
    await _assigned(consumer)  # a group's join takes a moment: not a delay the pipeline has in service
    bodies = [_body(prefix, n) for n in range(events)]
    processes = {BENCH_PROCESS: os.getpid(), **env.infrastructure_pids()}
    cpu_before = cpu_snapshot(processes, alone=frozenset({BENCH_PROCESS}))
    started = time.time()
    delivering = asyncio.create_task(_deliver(consumer, env.receiver_url(path), events))
    acknowledged = await (_paced(producer, topic, bodies, rate) if rate else _saturated(producer, topic, bodies))
    await delivering
    arrivals = await env.wait_for_arrivals(path, prefix, events)
    cpu = cpu_used(cpu_before, cpu_snapshot(processes, alone=frozenset({BENCH_PROCESS})))
    await consumer.stop()
    await producer.stop()
    figures = arrival_figures(arrivals, prefix, acknowledged, started, events)
    if not rate:  # every event counts as acknowledged when the last one is: no latency to speak of
        figures["latency_ms"] = None
    figures["cpu_seconds_per_10k"] = {name: round(seconds * 10_000 / events, 2) for name, seconds in cpu.items()}
    figures["produce_seconds"] = round(max(acknowledged.values()) - started, 2)
    return figures


async def _assigned(consumer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise TimeoutError("the bare pipeline's consumer got no partitions")
        await asyncio.sleep(0.05)


async def _saturated(producer, topic: str, bodies: list[bytes]) -> dict[int, float]:
    futures = [await producer.send(topic, body, key=str(n % 64).encode()) for n, body in enumerate(bodies)]
    await asyncio.gather(*futures)
    done = time.time()
    return dict.fromkeys(range(len(bodies)), done)


async def _paced(producer, topic: str, bodies: list[bytes], rate: float) -> dict[int, float]:
    """Batches of BATCH sent on schedule; every event's time is its batch's acknowledgement."""
    acknowledged: dict[int, float] = {}

    async def batch(first: int) -> None:
        futures = [await producer.send(topic, bodies[n], key=str(n % 64).encode())
                   for n in range(first, min(first + BATCH, len(bodies)))]
        await asyncio.gather(*futures)
        acknowledged.update(dict.fromkeys(range(first, first + len(futures)), time.time()))

    start, tasks = time.time() + 0.05, []
    for first in range(0, len(bodies), BATCH):
        delay = start + first / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(batch(first)))
    await asyncio.gather(*tasks)
    return acknowledged


async def _deliver(consumer, url: str, events: int) -> None:
    """Consume and POST each record (IN_FLIGHT at most) until `events` were answered."""
    limit = asyncio.Semaphore(IN_FLIGHT)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as http:
        async def post(value: bytes) -> None:
            async with limit, http.post(url, data=value) as response:
                await response.read()

        tasks, consumed = set(), 0
        deadline = time.monotonic() + 300
        while consumed < events and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=1000)
            for records in batch.values():
                for record in records:
                    task = asyncio.create_task(post(record.value))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    consumed += 1
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
