"""Every service answers /healthz, /readyz and /metrics (on the public api and ingest, only to the
operator or metrics token)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request

from services.devstack import SERVICES
from shared.kafka import make_consumer, report_lag
from shared.service import may_read_metrics
from shared.settings import Settings
from tests.conftest import eventually, realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import publish, wait_for_status


@pytest.mark.parametrize("service", SERVICES)
async def test_health_readiness_and_metrics(stack, service):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.ports[service]}") as client:
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok", "service": service}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        token = {"authorization": f"Bearer {stack.env['EM_ADMIN_TOKEN']}"}
        if service in ("api", "ingest"):  # their ports face the internet; their series name tenants' topics
            assert (await client.get("/metrics")).status_code == 401
            assert (await client.get("/metrics", headers={"authorization": "Bearer wrong"})).status_code == 401
        metrics = await client.get("/metrics", headers=token)
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert "python_info" in metrics.text


def test_the_metrics_token_reads_metrics_and_nothing_guesses_it():
    settings = Settings(admin_token="operator-token-0123456789", metrics_token="scrape-token-0123456789")

    def request(authorization: str | None) -> Request:
        headers = [(b"authorization", authorization.encode())] if authorization is not None else []
        return Request({"type": "http", "headers": headers})

    assert may_read_metrics(request("Bearer scrape-token-0123456789"), settings)
    assert may_read_metrics(request("bearer operator-token-0123456789"), settings)
    for refused in (None, "", "Bearer", "Bearer ", "Basic scrape-token-0123456789", "Bearer scrape-token"):
        assert not may_read_metrics(request(refused), settings), refused
    # Unset tokens match nothing, not even an empty bearer.
    assert not may_read_metrics(request("Bearer "), Settings(admin_token=None, metrics_token=None))


def test_breakers_are_counted_by_state_at_each_scrape():
    from services.dispatcher.breaker import Breakers

    def counted(state: str) -> float:
        return sum(s.value for family in text_string_to_metric_families(generate_latest().decode())
                   for s in family.samples if s.name == "em_dispatcher_breakers" and s.labels["state"] == state)

    breakers = Breakers(threshold=2, open_seconds=60)
    breakers.of("healthy").record(True)
    for _ in range(2):
        breakers.of("failing").record(False)
    assert (counted("closed"), counted("open"), counted("half_open")) == (1, 1, 0)
    breakers.of("failing").record(True)
    assert (counted("closed"), counted("open")) == (2, 0)


async def metric(client: httpx.AsyncClient, sample: str, **labels: str) -> float:
    """The sum of `sample` over the series carrying `labels`, as the service's /metrics says now."""
    text = (await client.get("/metrics")).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == sample and labels.items() <= s.labels.items())


async def test_metrics_count_the_work(stack, tenant, source, receiver):
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    await subscribe(tenant, configuration["id"])
    await settle()
    async with (httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.ports['matcher']}") as matcher,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.ports['dispatcher']}") as dispatcher):
        counters = [(matcher, "em_matcher_events_total", {}),
                    (matcher, "em_matcher_deliveries_total", {"mode": "realtime"}),
                    (dispatcher, "em_dispatcher_attempts_total", {"outcome": "success"}),
                    (dispatcher, "em_dispatcher_deliveries_total", {"status": "delivered"})]
        before = [await metric(client, sample, **labels) for client, sample, labels in counters]
        [event_id] = await publish(source, tenant)
        await wait_for_status(tenant, event_id, "delivered")
        after = [await metric(client, sample, **labels) for client, sample, labels in counters]
        for (_, sample, labels), then, now in zip(counters, before, after, strict=True):
            assert now >= then + 1, (sample, labels, then, now)

        async def lag_reported():  # the gauge has a series once the matcher has partitions to report on
            return 'em_consumer_lag{group="em-matcher"' in (await matcher.get("/metrics")).text

        await eventually(lag_reported, timeout=15)


async def test_a_partition_taken_away_in_a_rebalance_loses_its_lag_series(stack):
    """Otherwise the replica that lost it keeps reporting its last lag forever, and summing the
    lag over replicas counts the partition twice."""
    bootstrap = stack.env["EM_KAFKA_BOOTSTRAP"]
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"lag-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    for partition in (0, 1):
        await producer.send_and_wait(topic, b"x", partition=partition)
    await producer.stop()

    settings = Settings(kafka_bootstrap=bootstrap)
    first, second = make_consumer(settings, group, topic), make_consumer(settings, group, topic)

    async def keep_polling(consumer):  # fetches (so high watermarks are known) and rebalances
        while True:
            await consumer.getmany(timeout_ms=200)

    def partitions_reported() -> set[str]:
        return {s.labels["partition"] for family in text_string_to_metric_families(generate_latest().decode())
                for s in family.samples if s.name == "em_consumer_lag" and s.labels["group"] == group}

    async def reported(expected: set[str]):
        return partitions_reported() == expected

    await first.start()
    tasks = [asyncio.create_task(keep_polling(first)), asyncio.create_task(report_lag(first, group, every=0.2))]
    try:
        await eventually(lambda: reported({"0", "1"}), timeout=30)
        await second.start()  # takes one partition away from the first (the second reports nothing)
        tasks.append(asyncio.create_task(keep_polling(second)))
        await eventually(lambda: reported({str(tp.partition) for tp in first.assignment()} or {"none"}), timeout=60)
        assert len(partitions_reported()) == 1
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await first.stop()
        await second.stop()
