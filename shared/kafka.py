"""Kafka plumbing shared by the services: topic names, topic creation, producer and consumer
factories, and the change feed. Delivery semantics are at-least-once everywhere: offsets are
committed only after the work they stand for is durable, and consumers are idempotent."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import get_args

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import Counter, Gauge

from shared.messages import ChangeKind, decode, encode
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topics:
    events: str
    deliveries: str
    changes: str

    @classmethod
    def of(cls, settings: Settings) -> Topics:
        prefix = settings.kafka_topic_prefix
        return cls(f"{prefix}.events.v1", f"{prefix}.deliveries.v1", f"{prefix}.changes.v1")


def topic_config(replication_factor: int) -> dict[str, str]:
    """With three copies or more, an acknowledged write (the producers use acks=all) must be on
    all but one of them: one broker can then be lost without losing an acknowledged event, and
    writes go on while one copy is down."""
    if replication_factor >= 3:
        return {"min.insync.replicas": str(replication_factor - 1)}
    return {}


def missing_topics(settings: Settings, existing: set[str]) -> list[NewTopic]:
    """The topics `eventmgr create-topics` makes: those of `Topics.of(settings)` not in `existing`."""
    topics = Topics.of(settings)
    replicas = settings.kafka_replication_factor
    partitions = {topics.events: settings.kafka_partitions, topics.deliveries: settings.kafka_partitions,
                  topics.changes: 1}
    return [NewTopic(name, num_partitions=count, replication_factor=replicas, topic_configs=topic_config(replicas))
            for name, count in partitions.items() if name not in existing]


async def ensure_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        wanted = missing_topics(settings, set(await admin.list_topics()))
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


@lru_cache(maxsize=100_000)
def _key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def keyed_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's (and Java's) default partitioner, the same partition for the same key, with
    each key's hash remembered: aiokafka computes murmur2 in pure Python on every send, 7% of the
    matcher's CPU, while the keys (company and pinned configuration ids) repeat. No key (a
    delivery of a configuration that is not pinned): any partition."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[_key_hash(key) % len(all_partitions)]


MAX_REQUEST_BYTES = 4 * 1024 * 1024


def make_producer(settings: Settings) -> AIOKafkaProducer:
    # acks=all: a 202 from ingest means the broker has the event. No idempotent producer:
    # Tansu does not support it, and consumers dedupe by id anyway.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        linger_ms=2,
        max_batch_size=256 * 1024,
        max_request_size=MAX_REQUEST_BYTES,
        partitioner=keyed_partitioner,
    )


async def send_all(producer: AIOKafkaProducer, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Publish (key, value) records and wait until the broker has them all: each on the
    partition `producer.send` would choose (keyed_partitioner), in order within a partition,
    refused the same way when too large. Records are appended to batches of our own instead
    of one `send` each: 3-4 us of CPU per record instead of 16-31 (measured against the
    bench broker, 10,000 delivery messages)."""
    if not records:
        return
    partitions = sorted(await producer.partitions_for(topic))
    batches: dict[int, BatchBuilder] = {}
    sent = []
    for key, value in records:
        if DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []) > MAX_REQUEST_BYTES:
            raise MessageSizeTooLargeError(f"a {len(value)}-byte message is larger than the maximum request size")
        partition = keyed_partitioner(key, partitions, partitions)
        batch = batches.get(partition)
        if batch is None or batch.append(key=key, value=value, timestamp=None) is None:
            if batch is not None:  # full: send it, and start another (which takes any first record)
                sent.append(await producer.send_batch(batch, topic, partition=partition))
            batch = batches[partition] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    for partition, batch in batches.items():
        sent.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*sent)


def make_consumer(settings: Settings, group_id: str | None, *topics: str, **overrides) -> AIOKafkaConsumer:
    options = dict(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=2000,
        max_poll_records=1000,
        fetch_max_wait_ms=50,
    )
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def kafka_ready(producer: AIOKafkaProducer) -> None:
    """Raises unless the broker answers a metadata request within two seconds."""
    await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=2)


async def publish_change(producer: AIOKafkaProducer, settings: Settings, kind: ChangeKind, company_id: str) -> None:
    message = {"v": 1, "kind": kind, "company_id": company_id}
    await producer.send_and_wait(Topics.of(settings).changes, encode(message), key=company_id.encode())


CHANGE_KINDS = set(get_args(ChangeKind))
IGNORED_CHANGES = Counter("em_ignored_changes_total", "Undecodable change notifications skipped")


class ChangeFeed:
    """Every replica reads every change (no consumer group). Start it *before* the full load:
    it pins the current end of the topic first, so a change made during the load is replayed
    afterwards rather than lost.

    `applied` is how far this replica has applied the topic: every notification below that
    offset (per partition) was handled to the end by the loop reading `changes()`. `progress()`
    shows it beside the topic's end, so anyone (an operator, the tests) can tell a replica that
    is behind on configuration changes from one that is up to date."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = Topics.of(settings).changes
        self.consumer = make_consumer(settings, None, auto_offset_reset="latest")
        self.applied: dict[int, int] = {}

    async def start(self) -> None:
        await self.consumer.start()
        partitions = self.consumer.partitions_for_topic(self.topic) or {0}
        assignment = [TopicPartition(self.topic, p) for p in partitions]
        self.consumer.assign(assignment)
        await self.consumer.seek_to_end(*assignment)
        for tp in assignment:  # resolve the position now, before the caller's full load
            # What is before it, the full load covers.
            self.applied[tp.partition] = await self.consumer.position(tp)

    async def changes(self):
        """Each notification, once. It counts as applied when the caller asks for the next one
        (the body of its `async for` has finished with it)."""
        while True:
            batch = await self.consumer.getmany(timeout_ms=500, max_records=500)
            for records in batch.values():
                for record in records:
                    try:
                        change = decode(record.value)
                        if change.get("kind") not in CHANGE_KINDS or not isinstance(change.get("company_id"), str):
                            raise ValueError(f"not a change notification: {record.value[:200]!r}")
                    except Exception as exc:
                        # Not a notification the api wrote (it writes them through its outbox).
                        # Every replica reads this topic, so each would set the same message
                        # aside: it is logged and counted instead.
                        IGNORED_CHANGES.inc()
                        log.warning("ignoring change message at offset %s: %s", record.offset, exc)
                    else:
                        yield change
                    self.applied[record.partition] = record.offset + 1

    def progress(self) -> dict:
        """Per partition: the offset below which every change is applied, and the topic's end as
        of the last fetch (this replica polls twice a second, so a replica that keeps `end` ahead
        of `applied` is stuck on a change)."""
        partitions = {}
        for partition, applied in sorted(self.applied.items()):
            end = self.consumer.highwater(TopicPartition(self.topic, partition))
            partitions[str(partition)] = {"applied": applied, "end": applied if end is None else max(end, applied)}
        return {"topic": self.topic, "partitions": partitions}

    async def stop(self) -> None:
        await self.consumer.stop()


CONSUMER_LAG = Gauge("em_consumer_lag", "Records on the broker not yet consumed by this replica",
                     ["group", "topic", "partition"])


async def report_lag(consumer: AIOKafkaConsumer, group_id: str, every: float = 5.0) -> None:
    """Lag per assigned partition, from the high watermark the last fetch saw and our position:
    the signal to scale matcher and dispatcher replicas on (no admin call needed). A partition
    taken away in a rebalance loses its series here, so summing over replicas counts it once."""
    reported: set[TopicPartition] = set()
    while True:
        assigned = set(consumer.assignment())
        for partition in reported - assigned:
            CONSUMER_LAG.remove(group_id, partition.topic, str(partition.partition))
        reported &= assigned
        for partition in assigned:
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue
            try:
                position = await consumer.position(partition)
            except Exception:  # the partition was revoked meanwhile
                continue
            CONSUMER_LAG.labels(group_id, partition.topic, str(partition.partition)).set(max(highwater - position, 0))
            reported.add(partition)
        await asyncio.sleep(every)
