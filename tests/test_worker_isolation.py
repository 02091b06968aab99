"""One tenant's poison cannot stop a shared worker: messages the matcher or dispatcher cannot
handle are set aside as dead letters with their reason, and another company's events keep flowing
through the same processes. Poison goes straight onto the Kafka topics (as a buggy or hostile
producer would put it, past ingest's validation) and into the database."""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest

from shared.deadletter import kafka_source, set_aside
from shared.kafka import Topics, make_producer
from shared.messages import encode, event_message
from shared.settings import Settings
from tests.conftest import eventually, realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import attempts_of, deliveries_of, publish, wait_for_status


@pytest.fixture(scope="module")
def settings(stack) -> Settings:
    return Settings(database_url=stack.env["EM_DATABASE_URL"], kafka_bootstrap=stack.env["EM_KAFKA_BOOTSTRAP"],
                    kafka_topic_prefix=stack.env.get("EM_KAFKA_TOPIC_PREFIX", "em"))


@pytest.fixture
async def producer(settings):
    producer = make_producer(settings)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def pool(settings):
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def dead_letters(admin, company_id: str) -> list[dict]:
    response = await admin.get("/v1/admin/dead-letters", params={"company_id": company_id, "limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def flowing_tenant(tenant, receiver) -> str:
    """A realtime configuration and subscription for `tenant`; returns the receiver path."""
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    return path


async def test_poison_event_messages_are_set_aside_while_others_flow(settings, producer, tenant, other_tenant,
                                                                     admin, source, receiver):
    path = await flowing_tenant(tenant, receiver)
    other_path = await flowing_tenant(other_tenant, receiver)
    await settle()
    now = datetime.now(UTC).isoformat()
    nul_event = event_message(f"nul-{uuid.uuid4().hex}", "SCG-Message", "message.received", tenant.id, None, now,
                              now, {"body": "stop\u0000"})  # PostgreSQL refuses NUL in jsonb
    poisons = [
        b"\xff not json at all",
        b"[1]",
        b"null",
        None,  # a tombstone
        orjson.dumps({"v": 99, "id": "from-the-future"}),
        orjson.dumps({"v": 1, "id": "no-fields"}),
        encode({**event_message("bad-date", "SCG-Message", "message.sent", tenant.id, None, "yesterday", now, {})}),
        encode(nul_event),
    ]
    topic = Topics.of(settings).events
    for poison in poisons:  # keyed like the tenant's events: the same partition as what follows
        await producer.send_and_wait(topic, poison, key=tenant.id.encode())

    [after] = await publish(source, tenant)
    [others] = await publish(source, other_tenant)
    assert (await receiver.wait_for(path, 1))[0].json()["id"] == after
    assert (await receiver.wait_for(other_path, 1))[0].json()["id"] == others

    letters = await eventually(lambda: _at_least(dead_letters(admin, tenant.id), len(poisons)))
    assert {letter["source"] for letter in letters} == {kafka_source(topic)}
    assert {letter["service"] for letter in letters} == {"matcher"}
    by_payload = {letter["payload_base64"]: letter for letter in letters}
    assert set(by_payload) == {_b64(poison or b"") for poison in poisons}
    nul_letter = by_payload[_b64(encode(nul_event))]
    assert "Untranslatable" in nul_letter["reason"] or "0000" in nul_letter["reason"], nul_letter["reason"]
    assert await dead_letters(admin, other_tenant.id) == []

    # Requeued unchanged, the same poison is set aside again, and the matcher still runs.
    response = await admin.post(f"/v1/admin/dead-letters/{nul_letter['id']}/requeue")
    assert response.status_code == 200 and response.json()["requeued_at"], response.text
    again = await admin.post(f"/v1/admin/dead-letters/{nul_letter['id']}/requeue")
    assert again.status_code == 409, "requeued once: a second call would put it back twice"
    await eventually(lambda: _at_least(dead_letters(admin, tenant.id), len(poisons) + 1))
    [later] = await publish(source, other_tenant)
    assert (await receiver.wait_for(other_path, 2))[1].json()["id"] == later


async def test_a_requeued_dead_letter_is_delivered_once_its_cause_is_gone(settings, pool, tenant, admin, receiver):
    path = await flowing_tenant(tenant, receiver)
    await settle()
    now = datetime.now(UTC).isoformat()
    event = event_message(f"fixed-{uuid.uuid4().hex}", "SCG-Message", "message.sent", tenant.id, None, now, now,
                          {"n": 1})
    topic = Topics.of(settings).events
    # As if a matcher release had a bug that refused this event: it was set aside, then fixed.
    await set_aside(pool, service="matcher", source=kafka_source(topic), reason="a bug, since fixed",
                    payload=encode(event), company_id=tenant.id, key=tenant.id.encode())
    [letter] = await dead_letters(admin, tenant.id)
    assert letter["payload_text"] == encode(event).decode()
    assert (await admin.post(f"/v1/admin/dead-letters/{letter['id']}/requeue")).status_code == 200
    assert (await receiver.wait_for(path, 1))[0].json()["id"] == event["id"]

    assert (await admin.post(f"/v1/admin/dead-letters/{letter['id']}x/requeue")).status_code == 404
    await set_aside(pool, service="matcher", source="subscription:sub_x", reason="a stored row",
                    payload=b"{}", company_id=tenant.id)
    row_letter = next(letter for letter in await dead_letters(admin, tenant.id)
                      if letter["source"] == "subscription:sub_x")
    assert (await admin.post(f"/v1/admin/dead-letters/{row_letter['id']}/requeue")).status_code == 409


async def test_poison_delivery_messages_are_set_aside_while_others_flow(settings, producer, tenant, admin, source,
                                                                        receiver):
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await settle()
    topic = Topics.of(settings).deliveries
    poisons = [b"{truncated", b"[]", None, orjson.dumps({"v": 1, "delivery_id": "dlv_x", "company_id": tenant.id,
                                            "delivery_configuration_id": configuration["id"], "attempt": "two",
                                            "succeeded_endpoints": [], "event": {"id": "e"}})]
    # On every partition: the next delivery may land on any of them (shared/messages.py delivery_key).
    partitions = sorted(await producer.partitions_for(topic))
    for partition in partitions:
        for poison in poisons:
            await producer.send_and_wait(topic, poison, key=configuration["id"].encode(), partition=partition)
    [after] = await publish(source, tenant)
    assert (await receiver.wait_for(path, 1))[0].json()["id"] == after
    letters = await eventually(lambda: _at_least(_from_source(admin, kafka_source(topic), poisons),
                                                 len(poisons) * len(partitions)))
    assert {letter["service"] for letter in letters} == {"dispatcher"}


async def test_an_endpoint_answering_nul_bytes_does_not_stall_the_recorder(tenant, other_tenant, source, receiver):
    nul_path = unique_path("nul")
    receiver.script(nul_path, body=b"accepted\x00\xff\xfe tail")
    configuration = await realtime_configuration(tenant, receiver.url(nul_path))
    await subscribe(tenant, configuration["id"])
    other_path = await flowing_tenant(other_tenant, receiver)
    await settle()
    ids = await publish(source, tenant, count=5)
    [others] = await publish(source, other_tenant)
    await receiver.wait_for(other_path, 1)
    await wait_for_status(other_tenant, others, "delivered")
    for event_id in ids:
        await wait_for_status(tenant, event_id, "delivered")
    [attempt] = await attempts_of(tenant, ids[0])
    assert attempt["response_excerpt"].startswith("accepted") and "\x00" not in attempt["response_excerpt"]


async def test_a_stored_subscription_the_matcher_cannot_use_is_set_aside(pool, tenant, other_tenant, admin, source,
                                                                         receiver):
    broken_path, path = unique_path("broken"), unique_path()
    broken = await subscribe(tenant, (await realtime_configuration(tenant, receiver.url(broken_path)))["id"])
    await subscribe(tenant, (await realtime_configuration(tenant, receiver.url(path)))["id"])
    other_path = await flowing_tenant(other_tenant, receiver)
    # What an older release let through: a start stored as -infinity.
    await pool.execute("UPDATE subscriptions SET start_at = '-infinity', updated_at = now() WHERE id = $1",
                       broken["id"])
    # Another subscription: its change notification makes the matcher reload the company.
    reload = await subscribe(tenant, (await realtime_configuration(tenant, receiver.url(unique_path())))["id"])
    letters = await eventually(lambda: _at_least(dead_letters(admin, tenant.id), 1))
    assert letters[0]["source"] == f"subscription:{broken['id']}"
    await settle()
    [event_id] = await publish(source, tenant)
    [others] = await publish(source, other_tenant)
    assert (await receiver.wait_for(path, 1))[0].json()["id"] == event_id
    assert (await receiver.wait_for(other_path, 1))[0].json()["id"] == others
    # The event was stored with all its deliveries at once: none through the broken subscription.
    delivered_through = {d["subscription_id"] for d in await deliveries_of(tenant, event_id)}
    assert broken["id"] not in delivered_through and reload["id"] in delivered_through
    assert receiver.requests[broken_path] == []


async def test_a_slow_endpoint_does_not_slow_another_company(tenant, other_tenant, source, receiver):
    """One company's endpoint answers in 1.5 s with hundreds of deliveries waiting; another
    company's events arrive as fast as on a quiet system (p99 within 2x, or 0.5 s on this noisy box)."""
    quick_path = await flowing_tenant(other_tenant, receiver)
    group = f"slow{uuid.uuid4().hex[:8]}"
    slow_paths = [unique_path(group) for _ in range(3)]  # three configurations, one slow host
    for slow_path in slow_paths:
        receiver.script(slow_path, delay=1.5)
        await subscribe(tenant, (await realtime_configuration(tenant, receiver.url(slow_path)))["id"])
    await settle()

    quiet = await _latencies(source, other_tenant, receiver, quick_path, 15)
    await publish(source, tenant, count=70)  # each reaches the three configurations
    await receiver.wait_for(slow_paths[0], 5)  # the slow host is busy now
    loaded = await _latencies(source, other_tenant, receiver, quick_path, 15, already=15)
    assert max(loaded) <= max(2 * max(quiet), 0.5), (quiet, loaded)
    assert sum(len(receiver.requests[path]) for path in slow_paths) < 210, "the slow host was still busy"
    assert statistics.median(loaded) < 0.5
    # One share for the company at that host, however many configurations point there.
    assert receiver.peak_in_flight[group] <= 128 // 2, "at most an equal share with the other busy host"


async def _latencies(source, tenant, receiver, path: str, count: int, already: int = 0) -> list[float]:
    latencies = []
    for n in range(count):
        started = time.monotonic()
        await publish(source, tenant)
        [*_, arrived] = await receiver.wait_for(path, already + n + 1)
        latencies.append(arrived.at - started)
    return latencies


async def _at_least(letters_coroutine, count: int):
    letters = await letters_coroutine
    return letters if len(letters) >= count else None


async def _from_source(admin, source: str, payloads: list[bytes]) -> list[dict]:
    response = await admin.get("/v1/admin/dead-letters", params={"service": "dispatcher", "limit": 500})
    wanted = {_b64(payload or b"") for payload in payloads}
    return [letter for letter in response.json()["data"]
            if letter["source"] == source and letter["payload_base64"] in wanted]


def _b64(payload: bytes) -> str:
    import base64

    return base64.b64encode(payload).decode()


async def test_poison_change_notifications_are_skipped(stack, settings, producer, tenant, source, receiver):
    pids = {name: stack.services[name].process.pid for name in ("matcher", "dispatcher")}
    topic = Topics.of(settings).changes
    for poison in (b"\x00\x01", b"[1]", None, orjson.dumps({"v": 1, "kind": "subscriptions", "company_id": 12345}),
                   orjson.dumps({"v": 1, "kind": "everything", "company_id": tenant.id})):
        await producer.send_and_wait(topic, poison, key=tenant.id.encode())
    path = await flowing_tenant(tenant, receiver)  # its change notification comes after the poison
    await settle()
    [event_id] = await publish(source, tenant)
    assert (await receiver.wait_for(path, 1))[0].json()["id"] == event_id
    assert {name: stack.services[name].process.pid for name in pids} == pids, "no worker restarted"


async def test_a_stored_schedule_that_cannot_fire_does_not_break_the_listing(pool, tenant):
    response = await tenant.client.post("/v1/delivery-configurations", json={
        "name": "files", "mode": "scheduled", "active": True, "schedule": {"simple": "daily"}})
    assert response.status_code == 201, response.text
    # What an older release accepted: a cron that never fires.
    await pool.execute("""UPDATE delivery_configurations SET schedule = '{"cron": "0 0 31 2 *"}' WHERE id = $1""",
                       response.json()["id"])
    listing = await tenant.client.get("/v1/delivery-configurations")
    assert listing.status_code == 200, listing.text
    assert listing.json()[0]["next_fire_times"] is None


async def test_a_result_the_database_refuses_is_set_aside_and_the_others_recorded(pool, tenant, admin, source,
                                                                                   receiver):
    import asyncio

    from services.dispatcher.recorder import DeliveryState, Recorder
    from services.dispatcher.sender import Attempt

    path = await flowing_tenant(tenant, receiver)
    await settle()
    ids = await publish(source, tenant, count=2)
    for event_id in ids:
        await wait_for_status(tenant, event_id, "delivered")
    rows = await pool.fetch("SELECT id, event_id, delivery_configuration_id FROM deliveries WHERE company_id = $1",
                            tenant.id)
    now = datetime.now(UTC)

    def state(row, attempt_count: int) -> DeliveryState:
        return DeliveryState(row["id"], tenant.id, row["delivery_configuration_id"], row["event_id"], "pending_retry",
                             attempt_count, now, [], "HTTP 503\x00", now, None)

    attempt = Attempt("ep", receiver.url(path), now, 1.0, 503, "HTTP 503", "retryable", "busy\x00", None)
    recorder = Recorder(pool)
    stopping = asyncio.Event()
    running = asyncio.create_task(recorder.run(stopping))
    try:
        # One result PostgreSQL refuses whatever we do (an attempt count beyond its integer), one fine.
        await asyncio.wait_for(asyncio.gather(recorder.record(state(rows[0], 2**40), [attempt]),
                                              recorder.record(state(rows[1], 2), [attempt])), 20)
    finally:
        stopping.set()
        await running
    statuses = {r["id"]: r for r in await pool.fetch(
        "SELECT id, status, attempt_count, last_error FROM deliveries WHERE company_id = $1", tenant.id)}
    assert statuses[rows[1]["id"]]["status"] == "pending_retry" and statuses[rows[1]["id"]]["attempt_count"] == 2
    assert statuses[rows[1]["id"]]["last_error"] == "HTTP 503\ufffd"
    assert statuses[rows[0]["id"]]["status"] == "failed" and "dead letter" in statuses[rows[0]["id"]]["last_error"]
    [letter] = await dead_letters(admin, tenant.id)
    assert letter["source"] == f"delivery:{rows[0]['id']}"


async def test_a_hostile_token_endpoint_fails_the_delivery_instead_of_breaking_it(tenant, source, receiver):
    token_path, hook = unique_path("token"), unique_path()
    receiver.script(token_path, headers={"content-type": "application/json"},
                    body=orjson.dumps({"access_token": "x\r\nInjected: 1", "token_type": "bearer", "expires_in": 1e30}))
    configuration = await realtime_configuration(tenant, receiver.url(hook), authentication={
        "type": "oauth2", "grant_type": "client_credentials", "token_url": receiver.url(token_path),
        "client_id": "crm", "client_secret": "s3cret-s3cret"})
    await subscribe(tenant, configuration["id"])
    await settle()
    [event_id] = await publish(source, tenant)
    failed = await wait_for_status(tenant, event_id, "failed")
    assert "usable access_token" in failed["last_error"], failed
    assert receiver.requests[hook] == [], "nothing was sent with a broken token"
