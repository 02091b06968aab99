"""The embedded broker's opt-in storage (EM_DEV_BROKER_STORAGE, README "Trying it"): with its log
on an S3-protocol server (moto's standalone server here) a broker restart keeps the queued events
and the consumer group's committed offsets; in memory (the default) it keeps nothing."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from moto.server import ThreadedMotoServer

from services.devstack import BROKER_STORAGE_VARIABLE, EmbeddedBroker, free_port

TOPIC = "durable"


@pytest.fixture
def s3_storage(monkeypatch):
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    assert httpx.put(f"http://127.0.0.1:{port}/tansu").status_code == 200
    for key, value in {BROKER_STORAGE_VARIABLE: "s3://tansu/", "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
                       "AWS_ACCESS_KEY_ID": "em-test", "AWS_SECRET_ACCESS_KEY": "em-test-secret",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}.items():
        monkeypatch.setenv(key, value)
    yield
    server.stop()


async def produce(bootstrap: str, values: list[bytes]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if TOPIC not in await admin.list_topics():  # a kept log has it already
            await admin.create_topics([NewTopic(TOPIC, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(TOPIC, value, key=value)
    finally:
        await producer.stop()


async def consume(bootstrap: str, wanted: int, commit: bool, within: float = 60) -> list[bytes]:
    """What group `g` gets: all `wanted` records as soon as they arrive, or what has come when
    `within` seconds have passed (less when there are not that many: the negative cases)."""
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id="g", auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    got: list[bytes] = []
    deadline = asyncio.get_running_loop().time() + within
    try:
        while len(got) < wanted and (left := deadline - asyncio.get_running_loop().time()) > 0:
            for records in (await consumer.getmany(timeout_ms=int(min(left, 1) * 1000))).values():
                got += [record.value for record in records]
        if commit:
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


async def topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


async def queued_after_a_restart(tmp_path) -> list[bytes] | None:
    """Group `g` reads and commits two events, a third is queued, the broker restarts: what `g`
    reads then (None: the topic itself is gone)."""
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    broker.start()
    try:
        await produce(broker.bootstrap, [b"one", b"two"])
        assert sorted(await consume(broker.bootstrap, 2, commit=True)) == [b"one", b"two"]
        await produce(broker.bootstrap, [b"three"])
    finally:
        broker.stop()
    broker.start()  # same port, same storage
    try:
        if TOPIC not in await topics(broker.bootstrap):
            return None
        return await consume(broker.bootstrap, 1, commit=False)
    finally:
        broker.stop()


@pytest.mark.timeout(120)
async def test_on_s3_a_restarted_broker_keeps_queued_events_and_committed_offsets(s3_storage, tmp_path):
    assert await queued_after_a_restart(tmp_path) == [b"three"]


@pytest.mark.timeout(120)
async def test_in_memory_a_restarted_broker_has_lost_them(monkeypatch, tmp_path):
    monkeypatch.delenv(BROKER_STORAGE_VARIABLE, raising=False)
    assert await queued_after_a_restart(tmp_path) is None
