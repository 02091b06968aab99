"""Publishing events and waiting for their deliveries to reach a status."""

from __future__ import annotations

import uuid

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
