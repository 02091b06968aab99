"""The matcher's crash safety, driven directly: an event replayed by Kafka after its fan-out was
interrupted is published again (same delivery id), and one fully published is not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.matcher import loader
from services.matcher.index import SubscriptionIndex
from services.matcher.worker import Matcher
from shared.db import create_pool
from shared.kafka import Topics, make_producer
from shared.messages import encode, event_message
from shared.settings import Settings
from tests.conftest import eventually, realtime_configuration, settle, subscribe, unique_path


async def test_interrupted_fanout_is_published_again_once(stack, tenant, receiver):
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await settle()
    settings = Settings(database_url=stack.env["EM_DATABASE_URL"], kafka_bootstrap=stack.env["EM_KAFKA_BOOTSTRAP"])
    pool = await create_pool(settings.database_url, size=2)
    producer = make_producer(settings)
    await producer.start()
    try:
        index = SubscriptionIndex()
        await loader.load_company_routes(pool, index, tenant.id)
        matcher = Matcher(index, pool, consumer=None, producer=producer, topics=Topics.of(settings))
        now = datetime.now(UTC).isoformat()

        def raw_event(event_id: str) -> bytes:
            return encode(event_message(event_id, "SCG-Message", "message.sent", tenant.id, None, now, now, {}))

        event_id = f"replay-{uuid.uuid4().hex}"
        raw = raw_event(event_id)

        await matcher.process([raw])
        [first] = await receiver.wait_for(path, 1)
        # The dispatcher records the attempt after the receiver answered: let it, or its update
        # would land on the state set up below.
        await eventually(lambda: pool.fetchval(
            "SELECT status = 'delivered' FROM deliveries WHERE company_id = $1 AND event_id = $2", tenant.id, event_id))

        # A crash after the database commit but before the flag flipped: Kafka replays the event.
        await pool.execute("UPDATE events SET fanned_out = false WHERE company_id = $1 AND id = $2",
                           tenant.id, event_id)
        await pool.execute("UPDATE deliveries SET status = 'queued' WHERE company_id = $1 AND event_id = $2",
                           tenant.id, event_id)
        await matcher.process([raw])
        first, second = await receiver.wait_for(path, 2)
        assert first.headers["webhook-id"] == second.headers["webhook-id"], "the same delivery, not a new one"
        assert await pool.fetchval("SELECT count(*) FROM deliveries WHERE company_id = $1 AND event_id = $2",
                                   tenant.id, event_id) == 1

        # A replay of a fully published event publishes nothing: the next event is the next to arrive.
        await matcher.process([raw])
        sentinel_id = f"sentinel-{uuid.uuid4().hex}"
        await matcher.process([raw_event(sentinel_id)])
        await receiver.wait_for(path, 3)
        assert [r.json()["id"] for r in receiver.requests[path]] == [event_id, event_id, sentinel_id]
    finally:
        await producer.stop()
        await pool.close()
