"""One configuration's deliveries are shared by every dispatcher replica, unless it is pinned
(shared/messages.py `delivery_key`): a throttled configuration's, or one whose OAuth refresh
token rotates, stay under its own key, on one partition and so one replica. A delivery queued
spread before its configuration was pinned is put back under the configuration's key."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.db import asyncpg_dsn
from shared.ids import new_id
from shared.messages import delivered_document, delivery_message, encode
from tests.conftest import (
    end_offsets,
    make_tenant,
    realtime_configuration,
    second_dispatcher_replica,
    settle,
    subscribe,
    topics,
    unique_path,
)
from tests.delivery_helpers import deliveries_of, publish, wait_for_status


@pytest.fixture
async def second_dispatcher(stack):
    async with second_dispatcher_replica(stack) as port:
        yield port


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


async def test_one_configuration_is_delivered_by_every_replica_unless_pinned(
        stack, admin, urls, source, receiver, token_server, second_dispatcher):
    """Spread: an unthrottled configuration's deliveries go to any partition, and both replicas
    send some. Pinned, under the configuration's key: a throttled one, and one whose OAuth
    refresh token rotates (two replicas refreshing with one token would have one refused)."""
    free_tenant, throttled_tenant, oauth_tenant = [await make_tenant(admin, urls) for _ in range(3)]
    free_path, throttled_path, oauth_path = unique_path("spread"), unique_path("throttled"), unique_path("oauth")
    free = await realtime_configuration(free_tenant, receiver.url(free_path))
    await subscribe(free_tenant, free["id"])
    throttled = await realtime_configuration(throttled_tenant, receiver.url(throttled_path),
                                             throttle={"max_requests": 100, "per_seconds": 1})
    await subscribe(throttled_tenant, throttled["id"])
    rotating = await realtime_configuration(oauth_tenant, token_server.resource_url(oauth_path), authentication={
        "type": "oauth2", "token_url": token_server.token_url, "client_id": "em-client",
        "client_secret": "em-client-secret", "grant_type": "refresh_token",
        "refresh_token": token_server.issue_refresh_token("em-client")})
    await subscribe(oauth_tenant, rotating["id"])
    await settle(second_dispatcher)
    since = await end_offsets(stack, topics(stack).deliveries)
    before = [await _attempts(stack.ports["dispatcher"]), await _attempts(second_dispatcher)]

    free_events = await publish(source, free_tenant, count=40)
    throttled_events = await publish(source, throttled_tenant, count=20)
    oauth_events = await publish(source, oauth_tenant, count=20)
    await receiver.wait_for(free_path, 40)
    await receiver.wait_for(throttled_path, 20)
    for event_id in oauth_events:  # each refresh used the token the one before it was given
        await wait_for_status(oauth_tenant, event_id, "delivered")

    after = [await _attempts(stack.ports["dispatcher"]), await _attempts(second_dispatcher)]
    assert all(later > earlier for earlier, later in zip(before, after, strict=True)), (before, after)
    free_messages = await _published(stack, since, await _delivery_ids(free_tenant, free_events))
    assert {key for _, key, _ in free_messages} == {None}
    assert len({partition for partition, _, _ in free_messages}) > 1
    for tenant, configuration, events in ((throttled_tenant, throttled, throttled_events),
                                          (oauth_tenant, rotating, oauth_events)):
        messages = await _published(stack, since, await _delivery_ids(tenant, events))
        assert {(partition, key) for partition, key, _ in messages} == {(messages[0][0], configuration["id"].encode())}
    for tenant in (free_tenant, throttled_tenant, oauth_tenant):
        await tenant.client.aclose()


STORE_EVENT = """
INSERT INTO events (company_id, id, topic, event_type, subject, occurred_at, received_at, data, fanned_out)
VALUES ($1, $2, 'SCG-Message', 'message.sent', NULL, now(), now(), '{}', true)
"""
STORE_DELIVERY = """
INSERT INTO deliveries (id, company_id, event_id, subscription_id, delivery_configuration_id, status,
                        attempt_count, succeeded_endpoints)
VALUES ($1, $2, $3, $4, $5, 'queued', 0, '{}')
"""


async def test_a_delivery_queued_spread_before_its_configuration_was_throttled_goes_back_under_its_key(
        stack, tenant, receiver):
    """As a matcher whose copy predates the throttle stores and queues it (or as a backlog is
    already on Kafka when the throttle is set): sent where it landed, it would escape the one
    bucket. It is parked instead, and the poller queues it again under the configuration's key."""
    path = unique_path("rekeyed")
    configuration = await realtime_configuration(tenant, receiver.url(path),
                                                 throttle={"max_requests": 100, "per_seconds": 1})
    subscription = await subscribe(tenant, configuration["id"])
    await settle()
    event = {"id": f"ev-{uuid.uuid4().hex}", "topic": "SCG-Message", "event_type": "message.sent", "subject": None,
             "occurred_at": "2026-11-28T00:00:00Z", "data": {}}
    delivery_id = new_id("dlv")
    connection = await asyncpg.connect(asyncpg_dsn(stack.env["EM_DATABASE_URL"]))
    try:
        await connection.execute(STORE_EVENT, tenant.id, event["id"])
        await connection.execute(STORE_DELIVERY, delivery_id, tenant.id, event["id"], subscription["id"],
                                 configuration["id"])
    finally:
        await connection.close()
    message = delivery_message(delivery_id, configuration["id"], tenant.id,
                               delivered_document(event, tenant.id, subscription["id"]))
    since = await end_offsets(stack, topics(stack).deliveries)
    producer = AIOKafkaProducer(bootstrap_servers=stack.env["EM_KAFKA_BOOTSTRAP"])
    await producer.start()
    try:
        await producer.send_and_wait(topics(stack).deliveries, encode(message), key=None)
    finally:
        await producer.stop()

    queued = await _published(stack, since, {delivery_id}, times=2)
    assert sorted(key or b"" for _, key, _ in queued) == [b"", configuration["id"].encode()]
    [request] = await receiver.wait_for(path, 1)
    assert request.headers["webhook-id"] == delivery_id
