"""Ingest validation: a bad batch is refused whole, naming each bad index; sources are limited
to their topics; nothing invalid reaches Kafka."""

from __future__ import annotations

import httpx

from tests.delivery_helpers import publish, stored


async def test_batch_with_bad_events_is_refused_whole(tenant, source):
    good = {"topic": "SCG-Message", "event_type": "message.sent", "company_id": tenant.id, "data": {}}
    response = await source.post("/v1/events", json={"events": [
        good,
        {**good, "event_type": "message.exploded"},
        {**good, "company_id": None},
        {**good, "data": "not an object"},
        {"topic": "NIS-Events", "event_type": "number.ported", "subject": "12345", "data": {}},
        {**good, "topic": "SCG-Nope"},
        {**good, "occurred_at": "2026-01-01T00:00:00"},
    ]})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    locs = [e["loc"] for e in response.json()["errors"]]
    assert locs == [["events", 1, "event_type"], ["events", 2, "company_id"], ["events", 3, "data"],
                    ["events", 4, "subject"], ["events", 5, "topic"], ["events", 6, "occurred_at"]]
    # An event accepted after it takes the same partition: once the matcher has stored that one,
    # it would have stored anything of the refused batch too.
    [later] = await publish(source, tenant)
    await stored(tenant, later)
    found = (await tenant.client.get("/v1/events")).json()["data"]
    assert [e["id"] for e in found] == [later], "nothing of a refused batch was accepted"


async def test_malformed_and_oversized_requests(source, tenant):
    assert (await source.post("/v1/events", content=b"{nope")).status_code == 422
    assert (await source.post("/v1/events", json={"events": []})).status_code == 422
    too_many = [{"topic": "SCG-Message", "event_type": "message.sent", "company_id": tenant.id, "data": {}}] * 1001
    response = await source.post("/v1/events", json={"events": too_many})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["events"]
    unknown = await source.post("/v1/events", json={"topic": "SCG-Message", "event_type": "message.sent",
                                                    "company_id": "cmp_nobody", "data": {}})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["loc"] == ["company_id"]


async def test_sources_are_limited_to_their_topics(admin, urls, tenant):
    created = await admin.post("/v1/admin/sources", json={"name": "nis-only", "topics": ["NIS-Events"]})
    assert created.status_code == 201 and created.json()["token"].startswith("ems_")
    async with httpx.AsyncClient(base_url=urls.ingest,
                                 headers={"authorization": f"Bearer {created.json()['token']}"}) as nis:
        refused = await nis.post("/v1/events", json={"topic": "SCG-Message", "event_type": "message.sent",
                                                     "company_id": tenant.id, "data": {}})
        assert refused.status_code == 403
        allowed = await nis.post("/v1/events", json={"topic": "NIS-Events", "event_type": "number.ported",
                                                     "subject": "+14155550100", "data": {}})
        assert allowed.status_code == 202
    async with httpx.AsyncClient(base_url=urls.ingest) as anonymous:
        assert (await anonymous.post("/v1/events", json={})).status_code == 401
        wrong = await anonymous.post("/v1/events", json={}, headers={"authorization": "Bearer ems_wrong"})
        assert wrong.status_code == 401
    bad_topic = await admin.post("/v1/admin/sources", json={"name": "x", "topics": ["SCG-Message", "Nope"]})
    assert bad_topic.status_code == 422 and bad_topic.json()["errors"][0]["loc"] == ["topics", 1]


async def test_no_source_publishes_operational_events(admin, source, tenant):
    """EM-Operations is Event Manager's own: it cannot be granted, and ingest refuses it anyway."""
    granted = await admin.post("/v1/admin/sources", json={"name": "x", "topics": ["SCG-Message", "EM-Operations"]})
    assert granted.status_code == 422 and granted.json()["errors"][0]["loc"] == ["topics", 1]
    forged = await source.post("/v1/events", json={
        "topic": "EM-Operations", "event_type": "endpoint.disabled", "company_id": tenant.id,
        "data": {"delivery_configuration_id": "dc_x"}})
    assert forged.status_code == 403


async def test_generated_ids_are_returned(source, tenant):
    ids = await publish(source, tenant, count=1)
    response = await source.post("/v1/events", json={"topic": "SCG-Message", "event_type": "message.sent",
                                                     "company_id": tenant.id, "data": {}})
    [generated] = response.json()["accepted"]
    assert generated.startswith("evt_") and generated not in ids


async def test_non_json_bodies_get_a_clear_415(source, tenant):
    form = await source.post("/v1/events", content=b'{"topic": "x"}',
                             headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and "application/json" in form.json()["detail"]
    api = await tenant.client.post("/v1/subscriptions", content=b"{}", headers={"content-type": "text/plain"})
    assert api.status_code == 415


async def test_the_event_route_checks_query_parameters_and_is_documented(source, tenant, urls):
    """The event route skips FastAPI's per-request dependency solving (RequestOnlyRoute), yet the
    app-wide check of query parameters still applies to it, and its documentation is unchanged."""
    event = {"topic": "SCG-Message", "event_type": "message.sent", "company_id": tenant.id, "data": {}}
    unknown = await source.post("/v1/events", params={"dry_run": "1"}, json=event)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["loc"] == ["query", "dry_run"], unknown.text
    async with httpx.AsyncClient(base_url=urls.ingest) as anonymous:
        operation = (await anonymous.get("/openapi.json")).json()["paths"]["/v1/events"]["post"]
    assert {"202", "409", "422", "429", "503"} <= set(operation["responses"]), operation["responses"].keys()
    assert operation["requestBody"]["required"] is True

