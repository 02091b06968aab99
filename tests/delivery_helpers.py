"""Publishing events and waiting for their deliveries to reach a status."""

from __future__ import annotations

import uuid

import asyncpg
from aiokafka.partitioner import murmur2

from shared.db import asyncpg_dsn
from tests.conftest import eventually, session_stack


async def publish(source, tenant, count: int = 1, topic: str = "SCG-Message", event_type: str = "message.sent",
                  **fields) -> list[str]:
    ids = [f"ev-{uuid.uuid4().hex}" for _ in range(count)]
    response = await source.post("/v1/events", json={"events": [
        {"id": i, "topic": topic, "event_type": event_type, "company_id": tenant.id, "data": {}, **fields}
        for i in ids
    ]})
    assert response.status_code == 202, response.text
    return ids


async def stored(tenant, event_id: str) -> dict:
    """The event as the event viewer shows it, once the matcher has stored it (with all its
    deliveries: they are written in one transaction)."""
    async def check():
        response = await tenant.client.get(f"/v1/events/{event_id}")
        return response.json() if response.status_code == 200 else None

    return await eventually(check)


async def deliveries_of(tenant, event_id: str) -> list[dict]:
    response = await tenant.client.get(f"/v1/events/{event_id}")
    return response.json()["deliveries"] if response.status_code == 200 else []


async def wait_for_status(tenant, event_id: str, wanted: str, timeout: float = 20,
                          configuration_id: str | None = None) -> dict:
    """The event's delivery (through `configuration_id`, when the event has several) once it has `wanted`."""
    seen: list = []

    async def check():
        seen[:] = [d for d in await deliveries_of(tenant, event_id)
                   if configuration_id in (None, d["delivery_configuration_id"])]
        assert len(seen) <= 1, "several deliveries: say which configuration"
        return seen[0] if seen and seen[0]["status"] == wanted else None

    try:
        return await eventually(check, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{event_id} never became {wanted}: {seen}") from None


async def attempts_of(tenant, event_id: str) -> list[dict]:
    return (await tenant.client.get(f"/v1/events/{event_id}/attempts")).json()


# The company's deliveries stored up to the sentinel's that are on Kafka and not yet concluded by
# a dispatcher (queued or put back for a retry, with no due time: not parked, not held).
IN_FLIGHT_UP_TO = """
SELECT count(*) FROM deliveries
WHERE company_id = $1 AND status IN ('queued', 'pending_retry') AND next_attempt_at IS NULL
  AND created_at <= (SELECT max(created_at) FROM deliveries WHERE company_id = $1 AND event_id = $2)
"""


async def sentinel(source, tenant, receiver, path: str, **fields) -> str:
    """Publish one more event for `tenant` and wait until it arrives at `path`, to end a negative
    check ("nothing else arrived") with an event instead of silence. It takes the way of the
    events before it on the events topic (the same company is the same partition, which the
    matcher takes in order), so once it has arrived the matcher has decided every event published
    before it. Deliveries are spread over partitions and dispatcher replicas, so it then also
    waits until none of the company's deliveries stored before its own is still in flight: each
    of those has been sent, or parked, held or given up on."""
    [event_id] = await publish(source, tenant, **fields)

    async def arrived():
        return any(request.json()["id"] == event_id for request in receiver.requests[path])

    await eventually(arrived)
    connection = await asyncpg.connect(asyncpg_dsn(session_stack().env["EM_DATABASE_URL"]))
    try:
        async def none_in_flight():
            return await connection.fetchval(IN_FLIGHT_UP_TO, tenant.id, event_id) == 0

        await eventually(none_in_flight)
    finally:
        await connection.close()
    return event_id


def same_partition_id(event_id: str, partitions: int) -> str:
    """A new event id that Kafka's default partitioner (ingest's producer) puts on the partition
    of `event_id`. A broadcast event (NIS-Events) is keyed by its id, not by a company, so only
    a sentinel on the same partition is sure to be matched after it."""
    def partition(key: str) -> int:
        return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions

    while True:
        candidate = f"sentinel-{uuid.uuid4().hex}"
        if partition(candidate) == partition(event_id):
            return candidate
