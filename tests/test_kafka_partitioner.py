"""The producers' partitioner (shared/kafka.py) remembers each key's hash; it must place every
key where aiokafka's default partitioner (and Java's) does, or one configuration's deliveries
would be split between partitions and replicas (its throttle is exact only on one)."""

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from shared.ids import new_id
from shared.kafka import MAX_REQUEST_BYTES, keyed_partitioner, send_all
from tests.conftest import eventually


def test_same_partition_as_the_default_partitioner_for_every_key():
    default = DefaultPartitioner()
    keys = [new_id(prefix).encode() for prefix in ("cmp", "dc", "evt") for _ in range(2000)]
    keys += [b"", b"a", "é-ü".encode(), bytes(range(256))]
    for partitions in ([0], list(range(6)), list(range(24)), [3, 7, 11]):
        for key in keys:
            assert keyed_partitioner(key, partitions, partitions) == default(key, partitions, partitions), key
            assert keyed_partitioner(key, partitions, partitions) == keyed_partitioner(key, partitions, [])  # cached


def test_no_key_goes_to_an_available_partition():
    assert {keyed_partitioner(None, [0, 1, 2], [2]) for _ in range(50)} == {2}
    assert {keyed_partitioner(None, [0, 1, 2], []) for _ in range(200)} == {0, 1, 2}


async def test_send_all_places_records_where_send_would_in_order(stack):
    """The matcher publishes with send_all (batches of its own): every record must land on the
    partition `producer.send` picks for its key, in order, across several full batches."""
    bootstrap = stack.env["EM_KAFKA_BOOTSTRAP"]
    topic = f"Test-send-all-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=256 * 1024,
                                partitioner=keyed_partitioner)
    await producer.start()
    try:
        keys = [new_id("dc").encode() for _ in range(12)]
        records = [(keys[i % 12], f"{i:05d}".encode() + b"x" * 5000) for i in range(600)]  # ~500 KB a partition
        await send_all(producer, topic, records)
        where_send_puts = {key: (await producer.send_and_wait(topic, b"probe", key=key)).partition for key in keys}
        with pytest.raises(MessageSizeTooLargeError):
            await send_all(producer, topic, [(keys[0], b"x" * (MAX_REQUEST_BYTES + 1))])
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: dict[int, list[tuple[bytes, bytes]]] = {}
    try:
        async def all_arrived():
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                got.setdefault(tp.partition, []).extend((r.key, r.value) for r in batch)
            return sum(len(v) for v in got.values()) >= len(records) + len(keys)
        await eventually(all_arrived, timeout=30, interval=0)
    finally:
        await consumer.stop()
    for partition, arrived in got.items():
        sent_here = [r for r in records if where_send_puts[r[0]] == partition]
        assert [r for r in arrived if r[1] != b"probe"] == sent_here, partition
        probes = {key for key, value in arrived if value == b"probe"}
        assert probes == {key for key in keys if where_send_puts[key] == partition}
