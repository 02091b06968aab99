"""Publishing events and waiting for their deliveries to reach a status."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import murmur2

from tests.conftest import eventually


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


async def sentinel(source, tenant, receiver, path: str, **fields) -> str:
    """Publish one more event for `tenant` and wait until it arrives at `path`, to end a negative
    check ("nothing else arrived") with an event instead of silence. It takes the way of the
    events before it: the same company is the same events partition, which the matcher takes in
    order; the same configuration is the same deliveries partition. So once it has arrived,
    the matcher has decided every event published before it."""
    [event_id] = await publish(source, tenant, **fields)

    async def arrived():
        return any(request.json()["id"] == event_id for request in receiver.requests[path])

    await eventually(arrived)
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
