"""One configuration's deliveries are shared by every dispatcher replica, unless it is throttled
(shared/messages.py `delivery_key`): a throttled configuration's stay under its own key, on one
partition and so one replica, which is what keeps its limit exact. A delivery queued under its
own key before its configuration was throttled is put back under the configuration's key."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.conftest import (
    end_offsets,
    eventually,
    make_tenant,
    realtime_configuration,
    settle,
    subscribe,
    topics,
    unique_path,
)
from tests.delivery_helpers import deliveries_of, publish


@pytest.fixture
async def second_dispatcher(stack):
    """A second dispatcher replica in the session's stack, once the group has given it partitions."""
    replica = await asyncio.to_thread(stack.start_replica, "dispatcher", 2)
    port = stack.ports[replica.name]
    try:
        await asyncio.to_thread(stack.wait_until_ready, replica.name)

        async def has_partitions():
            return 'em_consumer_lag{group="em-dispatcher"' in await _metrics(port)

        await eventually(has_partitions, timeout=30)
        yield port
    finally:
        await asyncio.to_thread(replica.stop)
        del stack.services[replica.name], stack.ports[replica.name]


async def _metrics(port: int) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        return (await client.get("/metrics")).text


async def _attempts(port: int) -> float:
    """HTTP attempts this dispatcher replica has made."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in (await _metrics(port)).splitlines()
               if line.startswith("em_dispatcher_attempts_total{"))


async def _published(stack, since: dict[int, int], delivery_ids: set[str], times: int = 1,
                     timeout: float = 20) -> list[tuple]:
    """(partition, key, message) of every delivery message for `delivery_ids` on the deliveries
    topic after the offsets `since`, once each id has been seen `times` times."""
    topic = topics(stack).deliveries
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.env["EM_KAFKA_BOOTSTRAP"], enable_auto_commit=False)
    await consumer.start()
    found: list[tuple] = []
    try:
        partitions = [TopicPartition(topic, p) for p in since]
        consumer.assign(partitions)
        for partition in partitions:
            consumer.seek(partition, since[partition.partition])
        deadline = asyncio.get_running_loop().time() + timeout
        while any(sum(message["delivery_id"] == i for _, _, message in found) < times for i in delivery_ids):
            assert asyncio.get_running_loop().time() < deadline, "not every delivery was published"
            for partition, records in (await consumer.getmany(timeout_ms=200)).items():
                for record in records:
                    message = orjson.loads(record.value)
                    if message.get("delivery_id") in delivery_ids:
                        found.append((partition.partition, record.key, message))
    finally:
        await consumer.stop()
    return found


async def _delivery_ids(tenant, event_ids: list[str]) -> set[str]:
    return {d["id"] for event_id in event_ids for d in await deliveries_of(tenant, event_id)}


async def test_one_configuration_is_delivered_by_every_replica_unless_throttled(
        stack, admin, urls, source, receiver, second_dispatcher):
    free_tenant, throttled_tenant = await make_tenant(admin, urls), await make_tenant(admin, urls)
    free_path, throttled_path = unique_path("spread"), unique_path("one-key")
    free = await realtime_configuration(free_tenant, receiver.url(free_path))
    await subscribe(free_tenant, free["id"])
    throttled = await realtime_configuration(throttled_tenant, receiver.url(throttled_path),
                                             throttle={"max_requests": 100, "per_seconds": 1})
    await subscribe(throttled_tenant, throttled["id"])
    await settle(second_dispatcher)
    since = await end_offsets(stack, topics(stack).deliveries)
    before = [await _attempts(stack.ports["dispatcher"]), await _attempts(second_dispatcher)]

    free_events = await publish(source, free_tenant, count=40)
    throttled_events = await publish(source, throttled_tenant, count=20)
    await receiver.wait_for(free_path, 40)
    await receiver.wait_for(throttled_path, 20)

    after = [await _attempts(stack.ports["dispatcher"]), await _attempts(second_dispatcher)]
    assert all(later > earlier for earlier, later in zip(before, after, strict=True)), (before, after)
    free_messages = await _published(stack, since, await _delivery_ids(free_tenant, free_events))
    assert all(key == message["delivery_id"].encode() for _, key, message in free_messages)
    assert len({partition for partition, _, _ in free_messages}) > 1
    throttled_messages = await _published(stack, since, await _delivery_ids(throttled_tenant, throttled_events))
    assert {(partition, key) for partition, key, _ in throttled_messages} == \
        {(throttled_messages[0][0], throttled["id"].encode())}
    for tenant in (free_tenant, throttled_tenant):
        await tenant.client.aclose()


async def test_a_delivery_queued_spread_before_its_configuration_was_throttled_goes_back_under_its_key(
        stack, tenant, source, receiver):
    """As a matcher whose copy predates the throttle would queue it (or a backlog already on
    Kafka when the throttle is set): sent where it landed, it would escape the one bucket."""
    path = unique_path("rekeyed")
    configuration = await realtime_configuration(tenant, receiver.url(path),
                                                 throttle={"max_requests": 100, "per_seconds": 1})
    await subscribe(tenant, configuration["id"])
    await settle()
    since = await end_offsets(stack, topics(stack).deliveries)
    [event_id] = await publish(source, tenant)
    await receiver.wait_for(path, 1)
    delivery_ids = await _delivery_ids(tenant, [event_id])
    [(_, _, message)] = await _published(stack, since, delivery_ids)

    since = await end_offsets(stack, topics(stack).deliveries)
    producer = AIOKafkaProducer(bootstrap_servers=stack.env["EM_KAFKA_BOOTSTRAP"])
    await producer.start()
    try:
        await producer.send_and_wait(topics(stack).deliveries, orjson.dumps(message),
                                     key=message["delivery_id"].encode())
    finally:
        await producer.stop()

    # The dispatcher parks it instead of sending it; the poller queues it again under the
    # configuration's key, and only then is it sent.
    queued = await _published(stack, since, delivery_ids, times=2)
    assert sorted(key for _, key, _ in queued) == sorted([message["delivery_id"].encode(),
                                                          configuration["id"].encode()])
    requests = await receiver.wait_for(path, 2)
    assert {r.headers["webhook-id"] for r in requests} == delivery_ids
