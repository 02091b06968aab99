"""The multi-tenant rule, end to end: one company throws every poison input we know at the
shared services (at the edges, straight onto Kafka, through its endpoints and patterns) while
another company's events keep flowing, all delivered, with p99 latency within 2x of a quiet run."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from shared.kafka import Topics, make_producer
from shared.messages import encode, event_message
from shared.settings import Settings
from tests.conftest import realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import publish, stored
from tests.test_worker_isolation import _latencies, flowing_tenant

WORST_WILDCARD = "*a*a*a*a*a*a*b"  # a backtracking regex takes seconds on a long run of "a"


@pytest.fixture
async def producer(stack):
    settings = Settings(database_url=stack.env["EM_DATABASE_URL"], kafka_bootstrap=stack.env["EM_KAFKA_BOOTSTRAP"])
    producer = make_producer(settings)
    await producer.start()
    yield producer, Topics.of(settings)
    await producer.stop()


async def edge_poison(noisy, source, configuration_id: str) -> list[tuple[str, int]]:
    """Each bad request and the status it got: every one must be a 4xx."""
    json = {"content-type": "application/json"}
    event = {"topic": "SCG-Message", "event_type": "message.received", "company_id": noisy.id}
    answers = {
        "NUL in event data": await source.post("/v1/events", json={**event, "data": {"body": "stop\u0000"}}),
        "NUL in a key": await source.post("/v1/events", json={**event, "data": {"a\u0000": 1}}),
        "lone surrogate": await source.post("/v1/events", headers=json, content=(
            b'{"topic":"SCG-Message","event_type":"message.received","company_id":"' + noisy.id.encode()
            + b'","data":{"body":"\\ud800"}}')),
        "year-1 occurred_at": await source.post("/v1/events", json={**event, "data": {},
                                                                   "occurred_at": "0001-01-01T00:00:00Z"}),
        "nesting orjson cannot write": await source.post("/v1/events", headers=json, content=(
            b'{"topic":"SCG-Message","event_type":"message.received","company_id":"' + noisy.id.encode()
            + b'","data":' + b'{"a":' * 500 + b"1" + b"}" * 500 + b"}")),
        "ingest body too large": await source.post("/v1/events", headers=json,
                                                   content=b'{"data":"' + b"x" * (40 * 1024 * 1024) + b'"}'),
        "year-1 start_at": await noisy.client.post("/v1/subscriptions", json={
            "topic": "SCG-Message", "delivery_configuration_id": configuration_id,
            "start_at": "0001-01-01T00:00:00Z"}),
        "cron that never fires": await noisy.client.post("/v1/delivery-configurations", json={
            "name": "never", "mode": "scheduled", "schedule": {"cron": "0 0 31 2 *"}}),
        "malformed endpoint URL": await noisy.client.post("/v1/delivery-configurations", json={
            "name": "bad", "mode": "realtime", "endpoints": [{"url": "http://[::1"}]}),
        "null endpoints on PATCH": await noisy.client.patch(f"/v1/delivery-configurations/{configuration_id}",
                                                            json={"endpoints": None}),
        "NUL in a path parameter": await noisy.client.get("/v1/events/ev%00x"),
        "api body too large": await noisy.client.post("/v1/monitored-numbers", headers=json,
                                                      content=b'{"numbers":["' + b"1" * (40 * 1024 * 1024) + b'"]}'),
    }
    return [(name, response.status_code) for name, response in answers.items()]


async def kafka_poison(producer, topics: Topics, noisy) -> None:
    now = datetime.now(UTC).isoformat()
    key = noisy.id.encode()
    for poison in (b"\xff\xfe", orjson.dumps({"v": 7}),
                   encode(event_message(f"nul-{uuid.uuid4().hex}", "SCG-Message", "message.received", noisy.id,
                                        None, now, now, {"body": "\u0000"}))):
        await producer.send_and_wait(topics.events, poison, key=key)
    await producer.send_and_wait(topics.deliveries, b"{not a delivery", key=key)
    await producer.send_and_wait(topics.changes, orjson.dumps({"v": 1, "kind": "subscriptions", "company_id": 1}))


async def test_one_company_cannot_stop_or_slow_another(stack, producer, tenant, other_tenant, source, receiver):
    noisy, quiet = tenant, other_tenant
    quiet_path = await flowing_tenant(quiet, receiver)
    slow_path, nul_path, pattern_path = unique_path("slow"), unique_path("nul"), unique_path("pattern")
    receiver.script(slow_path, delay=1.5)
    receiver.script(nul_path, body=b"ok\x00\xff")
    slow = await realtime_configuration(noisy, receiver.url(slow_path))
    await subscribe(noisy, slow["id"], event_types=["message.sent"])
    # Another host name for the same receiver: the slow host's lane must not hold these back.
    other_host = receiver.url(nul_path).replace("127.0.0.1", "localhost")
    await subscribe(noisy, (await realtime_configuration(noisy, other_host))["id"],
                    event_types=["message.delivered"])
    await subscribe(noisy, (await realtime_configuration(noisy, receiver.url(pattern_path)))["id"],
                    event_types=["message.received"],
                    matching_criteria={"data": {"body": [{"wildcard": WORST_WILDCARD}]}})
    await settle()
    pids = {name: service.process.pid for name, service in stack.services.items()}

    quiet_run = await _latencies(source, quiet, receiver, quiet_path, 20)
    pattern_events: list[str] = []

    async def noise():
        await publish(source, noisy, count=300, event_type="message.sent")  # 1.5 s each at the endpoint
        await publish(source, noisy, count=50, event_type="message.delivered")  # answered with NUL bytes
        long_run = "a" * 100_000
        for _ in range(5):  # each event costs a backtracking regex seconds; linear matching microseconds
            pattern_events.extend(await publish(source, noisy, count=20, event_type="message.received",
                                                data={"body": long_run}))
        await kafka_poison(*producer, noisy)
        return await edge_poison(noisy, source, slow["id"])

    noisy_task = asyncio.create_task(noise())
    await receiver.wait_for(slow_path, 1)
    loaded_run = await _latencies(source, quiet, receiver, quiet_path, 20, already=20)
    answers = await noisy_task
    assert [(name, status) for name, status in answers if not 400 <= status < 500] == [], answers

    assert max(loaded_run) <= max(2 * max(quiet_run), 0.5), (quiet_run, loaded_run)
    assert {name: service.process.pid for name, service in stack.services.items()} == pids, "a service restarted"
    await receiver.wait_for(nul_path, 50)
    for event_id in pattern_events:  # matched (stored) by now, each without a delivery
        assert (await stored(noisy, event_id))["deliveries"] == [], "no event matched the pattern (no b)"
    assert receiver.requests[pattern_path] == []
