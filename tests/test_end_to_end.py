"""One event the whole way: ingest -> Kafka -> matcher -> PostgreSQL -> Kafka -> dispatcher ->
a real HTTP receiver, then the event viewer and tracking show what happened."""

from __future__ import annotations

import uuid

from tests.conftest import eventually, realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import deliveries_of, sentinel


async def test_event_is_delivered_as_the_contract_says(tenant, source, receiver):
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    subscription = await subscribe(tenant, configuration["id"], event_types=["message.delivered"])
    await settle()

    event_id = f"msg-{uuid.uuid4().hex}"
    response = await source.post("/v1/events", json={
        "id": event_id, "topic": "SCG-Message", "event_type": "message.delivered", "company_id": tenant.id,
        "subject": "+14155550100", "occurred_at": "2026-11-27T10:00:00Z", "data": {"message_id": "m-1"},
    })
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": [event_id]}

    [request] = await receiver.wait_for(path, 1)
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        "id": event_id, "topic": "SCG-Message", "event_type": "message.delivered", "company_id": tenant.id,
        "subject": "+14155550100", "occurred_at": "2026-11-27T10:00:00Z", "data": {"message_id": "m-1"},
        "subscription_id": subscription["id"],
    }
    assert request.headers["webhook-id"].startswith("dlv_")

    async def delivered():
        view = (await tenant.client.get(f"/v1/events/{event_id}")).json()
        return view if view["deliveries"] and view["deliveries"][0]["status"] == "delivered" else None

    view = await eventually(delivered)
    assert view["status"] == "delivered"
    assert view["deliveries"][0]["subscription_id"] == subscription["id"]
    assert view["deliveries"][0]["attempt_count"] == 1

    attempts = (await tenant.client.get(f"/v1/events/{event_id}/attempts")).json()
    assert len(attempts) == 1
    assert attempts[0]["endpoint_url"] == receiver.url(path)
    assert attempts[0]["http_status"] == 200
    assert attempts[0]["outcome"] == "success"
    assert attempts[0]["duration_ms"] >= 0


async def test_batch_and_repeated_ids_are_delivered_once(tenant, source, receiver):
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await settle()
    ids = [f"b-{uuid.uuid4().hex}" for _ in range(5)]
    events = [{"id": i, "topic": "SCG-Message", "event_type": "message.sent", "company_id": tenant.id,
               "data": {"n": n}} for n, i in enumerate(ids)]
    assert (await source.post("/v1/events", json={"events": events})).status_code == 202
    assert (await source.post("/v1/events", json={"events": events[:2]})).status_code == 202
    await receiver.wait_for(path, 5)
    last = await sentinel(source, tenant, receiver, path)
    received = sorted(r.json()["id"] for r in receiver.requests[path])
    assert received == sorted([*ids, last])
    for event_id in ids[:2]:
        assert len(await deliveries_of(tenant, event_id)) == 1, "the repeated ids made no second delivery"


async def test_a_second_company_never_sees_the_first_ones_data(tenant, other_tenant, source, receiver):
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    subscription = await subscribe(tenant, configuration["id"])
    other_path = unique_path()
    other_configuration = await realtime_configuration(other_tenant, receiver.url(other_path))
    await subscribe(other_tenant, other_configuration["id"])
    await settle()
    event_id = f"iso-{uuid.uuid4().hex}"
    await source.post("/v1/events", json={"id": event_id, "topic": "SCG-Message", "event_type": "message.sent",
                                          "company_id": tenant.id, "data": {}})
    await receiver.wait_for(path, 1)
    # The matcher stored the event with all its deliveries at once, before this one was sent:
    # none is for the other company, and nothing reached its endpoint.
    other = other_tenant.client
    assert (await other.get(f"/v1/events/{event_id}")).status_code == 404
    assert receiver.requests[other_path] == []
    assert (await other.get(f"/v1/events/{event_id}/attempts")).status_code == 404
    assert (await other.post(f"/v1/events/{event_id}/republish")).status_code == 404
    assert (await other.post(f"/v1/events/{event_id}/handled")).status_code == 404
    assert (await other.get(f"/v1/delivery-configurations/{configuration['id']}")).status_code == 404
    assert (await other.get(f"/v1/subscriptions/{subscription['id']}")).status_code == 404
    assert (await other.get("/v1/events", params={"id": event_id})).json()["data"] == []
    listed = (await other.get("/v1/delivery-configurations")).json()
    assert [c["id"] for c in listed] == [other_configuration["id"]]


async def test_repeated_id_within_one_batch_is_delivered_once(tenant, source, receiver):
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await settle()
    event = {"id": f"dup-{uuid.uuid4().hex}", "topic": "SCG-Message", "event_type": "message.sent",
             "company_id": tenant.id, "data": {}}
    assert (await source.post("/v1/events", json={"events": [event, event, event]})).status_code == 202
    await receiver.wait_for(path, 1)
    last = await sentinel(source, tenant, receiver, path)
    assert [r.json()["id"] for r in receiver.requests[path]] == [event["id"], last]
    assert len(await deliveries_of(tenant, event["id"])) == 1
