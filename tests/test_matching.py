"""Subscriptions and matching through the running services: validation, criteria, windows,
activity flags, monitored numbers and the NIS-Events feed, tenant separation."""

from __future__ import annotations

import uuid

from shared.db import create_pool
from tests.conftest import end_offsets, eventually, realtime_configuration, settle, subscribe, topics, unique_path
from tests.delivery_helpers import deliveries_of, publish, same_partition_id, sentinel, stored, wait_for_status


async def test_subscription_validation_names_the_field(tenant, receiver):
    configuration = await realtime_configuration(tenant, receiver.url("/v"))
    base = {"topic": "SCG-Message", "delivery_configuration_id": configuration["id"],
            "start_at": "2026-01-01T00:00:00Z"}
    cases = [
        ({"topic": "SCG-Nope"}, ["topic"]),
        ({"event_types": ["message.sent", "message.exploded"]}, ["event_types", 1]),
        ({"topic": "NIS-Events"}, ["event_types"]),
        ({"delivery_configuration_id": "dc_missing"}, ["delivery_configuration_id"]),
        ({"matching_criteria": {"data": {"keyword": [{"prefix": 5}]}}},
         ["matching_criteria", "data", "keyword", 0, "prefix"]),
        ({"end_at": "2025-01-01T00:00:00Z"}, ["end_at"]),
        ({"start_at": "yesterday"}, ["start_at"]),
        ({"unexpected": 1}, ["unexpected"]),
    ]
    for change, loc in cases:
        response = await tenant.client.post("/v1/subscriptions", json={**base, **change})
        assert response.status_code == 422, (change, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["loc"] == loc, (change, response.json())
    nis = await tenant.client.post("/v1/subscriptions", json={**base, "topic": "NIS-Events"})
    assert "requires at least one event type" in nis.json()["detail"]
    malformed = await tenant.client.post("/v1/subscriptions", content=b"{not json",
                                         headers={"content-type": "application/json"})
    assert malformed.status_code == 422


async def test_criteria_event_types_and_windows_decide_delivery(tenant, source, receiver):
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    subscription = await subscribe(
        tenant, configuration["id"], event_types=["message.received"],
        matching_criteria={"data": {"keyword": [{"equals-ignore-case": "stop"}]}},
        start_at="2026-01-01T00:00:00Z", end_at="2026-02-01T00:00:00Z",
    )
    await settle()
    cases = {
        "match": ("message.received", "Stop", "2026-01-15T00:00:00Z", True),
        "window start is inclusive": ("message.received", "STOP", "2026-01-01T00:00:00Z", True),
        "before the window": ("message.received", "STOP", "2025-12-31T23:59:59Z", False),
        "window end is exclusive": ("message.received", "STOP", "2026-02-01T00:00:00Z", False),
        "other event type": ("message.sent", "STOP", "2026-01-15T00:00:00Z", False),
        "criteria do not match": ("message.received", "START", "2026-01-15T00:00:00Z", False),
    }
    ids = {}
    for name, (event_type, keyword, occurred_at, _) in cases.items():
        [ids[name]] = await publish(source, tenant, event_type=event_type, occurred_at=occurred_at,
                                    data={"keyword": keyword})
    for name, (*_, expected) in cases.items():
        view = await stored(tenant, ids[name])
        if expected:
            delivery = await wait_for_status(tenant, ids[name], "delivered")
            assert delivery["subscription_id"] == subscription["id"], name
        else:
            assert view["deliveries"] == [] and view["status"] == "unmatched", name
    last = await sentinel(source, tenant, receiver, path, event_type="message.received",
                          occurred_at="2026-01-15T00:00:00Z", data={"keyword": "stop"})
    assert sorted(r.json()["id"] for r in receiver.requests[path]) == sorted(
        [last, *(ids[name] for name, case in cases.items() if case[3])])


async def test_future_start_inactive_subscription_and_inactive_configuration(tenant, source, receiver):
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    future = await subscribe(tenant, configuration["id"], start_at="2099-01-01T00:00:00Z")
    inactive = await subscribe(tenant, configuration["id"], active=False)
    await settle()
    [now] = await publish(source, tenant)
    assert (await stored(tenant, now))["deliveries"] == []
    # The future subscription is in force: an event from within its window matches it.
    [later] = await publish(source, tenant, occurred_at="2099-06-01T00:00:00Z")
    delivery = await wait_for_status(tenant, later, "delivered")
    assert delivery["subscription_id"] == future["id"]

    # Activating the subscription takes effect in the matcher.
    response = await tenant.client.patch(f"/v1/subscriptions/{inactive['id']}", json={"active": True})
    assert response.status_code == 200 and response.json()["active"] is True
    await settle()
    [second] = await publish(source, tenant)
    delivery = await wait_for_status(tenant, second, "delivered")
    assert delivery["subscription_id"] == inactive["id"]

    # An inactive delivery configuration receives nothing.
    await tenant.client.patch(f"/v1/delivery-configurations/{configuration['id']}", json={"active": False})
    await settle()
    [third] = await publish(source, tenant)
    assert (await stored(tenant, third))["deliveries"] == []


async def test_nis_events_reach_exactly_the_companies_monitoring_the_number(
        stack, tenant, other_tenant, source, receiver):
    number_a, number_b = "+1415555" + str(uuid.uuid4().int)[:4], "+4930555" + str(uuid.uuid4().int)[:4]
    paths = {}
    for company, number in ((tenant, number_a), (other_tenant, number_b)):
        response = await company.client.post("/v1/monitored-numbers", json={"numbers": [number]})
        assert response.json() == {"added": 1, "already_present": 0}
        paths[company.id] = unique_path("nis")
        configuration = await realtime_configuration(company, receiver.url(paths[company.id]))
        await subscribe(company, configuration["id"], topic="NIS-Events", event_types=["number.ported"])
    await settle()
    partitions = len(await end_offsets(stack, topics(stack).events))

    def nis(number, event_type="number.ported", after=None):
        # Broadcast events are keyed by their id: `after` puts this one on that event's partition.
        event_id = same_partition_id(after["id"], partitions) if after else f"nis-{uuid.uuid4().hex}"
        return {"id": event_id, "topic": "NIS-Events", "event_type": event_type, "subject": number,
                "data": {"carrier": "X"}}

    for_a, for_b, deactivated = nis(number_a), nis(number_b), nis(number_a, "number.deactivated")
    unmonitored = nis("+81312345678")
    # Sentinels that do match, each after an event that must not.
    after_deactivated, after_unmonitored = nis(number_a, after=deactivated), nis(number_b, after=unmonitored)
    response = await source.post("/v1/events", json={"events": [for_a, for_b, deactivated, unmonitored]})
    assert response.status_code == 202, response.text
    response = await source.post("/v1/events", json={"events": [after_deactivated, after_unmonitored]})
    assert response.status_code == 202, response.text
    requests_a = await receiver.wait_for(paths[tenant.id], 2)
    requests_b = await receiver.wait_for(paths[other_tenant.id], 2)
    assert sorted(r.json()["id"] for r in requests_a) == sorted([for_a["id"], after_deactivated["id"]])
    assert sorted(r.json()["id"] for r in requests_b) == sorted([for_b["id"], after_unmonitored["id"]])
    assert {r.json()["company_id"] for r in requests_a} == {tenant.id}
    assert {r.json()["company_id"] for r in requests_b} == {other_tenant.id}
    assert (await other_tenant.client.get(f"/v1/events/{for_a['id']}")).status_code == 404
    assert (await tenant.client.get(f"/v1/events/{deactivated['id']}")).status_code == 404
    assert (await tenant.client.get(f"/v1/events/{unmonitored['id']}")).status_code == 404
    assert (await other_tenant.client.get(f"/v1/events/{unmonitored['id']}")).status_code == 404

    # Stop monitoring: the number's events no longer reach the company.
    await tenant.client.request("DELETE", "/v1/monitored-numbers", json={"numbers": [number_a]})
    await settle()
    again = nis(number_a)
    await source.post("/v1/events", json=again)
    await source.post("/v1/events", json=nis(number_b, after=again))
    await receiver.wait_for(paths[other_tenant.id], 3)
    assert len(receiver.requests[paths[tenant.id]]) == 2
    assert (await tenant.client.get(f"/v1/events/{again['id']}")).status_code == 404


async def test_bulk_monitored_numbers(tenant):
    prefix = "+1" + str(uuid.uuid4().int)[:4]
    numbers = [f"{prefix}{i:06d}" for i in range(100_000)]
    response = await tenant.client.post("/v1/monitored-numbers", json={"numbers": numbers}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json() == {"added": 100_000, "already_present": 0}
    again = await tenant.client.post("/v1/monitored-numbers", json={"numbers": numbers[:10] + ["+19998887777"]})
    assert again.json() == {"added": 1, "already_present": 10}
    page = (await tenant.client.get("/v1/monitored-numbers", params={"limit": 3})).json()
    assert page["data"] == sorted(page["data"]) and len(page["data"]) == 3 and page["next_cursor"]
    following = (await tenant.client.get("/v1/monitored-numbers",
                                         params={"limit": 3, "cursor": page["next_cursor"]})).json()
    assert following["data"][0] > page["data"][-1]
    bad = await tenant.client.post("/v1/monitored-numbers", json={"numbers": ["+14155550100", "0800 123"]})
    assert bad.status_code == 422 and "[1] '0800 123'" in bad.json()["detail"]
    removed = await tenant.client.request("DELETE", "/v1/monitored-numbers", json={"numbers": numbers[:5]})
    assert removed.json() == {"removed": 5, "not_present": 0}


async def test_company_scoped_events_reach_only_their_company(tenant, other_tenant, source, receiver):
    path, other_path = unique_path(), unique_path()
    await subscribe(tenant, (await realtime_configuration(tenant, receiver.url(path)))["id"])
    await subscribe(other_tenant, (await realtime_configuration(other_tenant, receiver.url(other_path)))["id"])
    await settle()
    [event_id] = await publish(source, tenant)
    await receiver.wait_for(path, 1)
    # The matcher stored the event with all its deliveries at once, before this one was sent.
    assert await deliveries_of(other_tenant, event_id) == []
    assert receiver.requests[other_path] == []


async def test_a_change_whose_notification_was_lost_is_reconciled(stack, tenant, source, receiver):
    """The api commits, then dies before announcing: the matcher still picks the change up
    (the test stack reconciles every 2 s)."""
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    subscription = await subscribe(tenant, configuration["id"], active=False)
    await settle()  # the notifications that were sent are applied: only reconciling can find what follows
    pool = await create_pool(stack.env["EM_DATABASE_URL"], size=1)
    try:
        await pool.execute("UPDATE subscriptions SET active = true, updated_at = now() WHERE id = $1",
                           subscription["id"])
    finally:
        await pool.close()

    async def matched():
        [event_id] = await publish(source, tenant)
        return (await stored(tenant, event_id))["deliveries"]

    [delivery] = await eventually(matched, timeout=15, interval=0.5)
    assert delivery["subscription_id"] == subscription["id"]
