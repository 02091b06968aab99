"""Test events: an event type's example sent through a configuration by the dispatcher (policy,
signing, XML), marked as a test, answered with its attempt, and seen by no counter or search."""

from __future__ import annotations

from xml.etree import ElementTree

from standardwebhooks.webhooks import Webhook

from tests.conftest import realtime_configuration, settle, unique_path


async def example_of(tenant, topic: str, event_type: str) -> dict:
    catalog = (await tenant.client.get(f"/v1/topics/{topic}")).json()
    return next(t["example"] for t in catalog["event_types"] if t["name"] == event_type)


async def test_a_test_event_arrives_marked_and_its_attempt_is_answered(tenant, receiver):
    path = unique_path("test-event")
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await settle()
    response = await tenant.client.post(f"/v1/delivery-configurations/{configuration['id']}/test",
                                        json={"event_type": "message.delivered"})
    assert response.status_code == 200, response.text
    result = response.json()
    [attempt] = result["attempts"]
    assert attempt["http_status"] == 200 and attempt["outcome"] == "success"
    assert attempt["duration_ms"] >= 0 and attempt["response_excerpt"] is not None
    assert attempt["endpoint_id"] == configuration["endpoints"][0]["id"]
    [request] = receiver.requests[path]  # the attempt is answered after the request arrived
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["webhook-test"] == "true" and headers["webhook-id"] == result["id"]
    body = Webhook(configuration["signing_secret"]).verify(request.body, headers)  # signed like a delivery
    assert body["test"] is True and body["event_type"] == "message.delivered" and body["topic"] == "SCG-Message"
    assert body["data"] == await example_of(tenant, "SCG-Message", "message.delivered") == result["event"]["data"]


async def test_a_test_event_takes_the_configurations_policy_and_format(tenant, receiver):
    path = unique_path("test-event-xml")
    receiver.script(path, statuses=[503], body=b"down for maintenance")
    configuration = await realtime_configuration(
        tenant, receiver.url(path), format="xml", active=False,
        policy={"method": "PUT", "headers": {"X-Tenant": "acme"}, "timeout_seconds": 5})
    await settle()
    response = await tenant.client.post(f"/v1/delivery-configurations/{configuration['id']}/test",
                                        json={"event_type": "number.ported"})
    assert response.status_code == 200, response.text
    [attempt] = response.json()["attempts"]
    assert attempt["http_status"] == 503 and attempt["outcome"] != "success"
    assert "down for maintenance" in attempt["response_excerpt"]
    [request] = receiver.requests[path]
    assert request.method == "PUT" and request.headers["X-Tenant"] == "acme"
    root = ElementTree.fromstring(request.body)
    assert root.findtext("test") == "true" and root.findtext("event_type") == "number.ported"


async def test_test_events_are_neither_counted_nor_found(tenant, receiver):
    path = unique_path("test-event-uncounted")
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await settle()
    result = (await tenant.client.post(f"/v1/delivery-configurations/{configuration['id']}/test",
                                       json={"event_type": "message.sent"})).json()
    assert result["attempts"][0]["outcome"] == "success"
    [row] = [c for c in (await tenant.client.get("/v1/dashboard")).json()["data"]
             if c["delivery_configuration_id"] == configuration["id"]]
    assert set(row["counts"].values()) == {0} and row["last_success_at"] is None
    assert row["endpoints"][0]["health"] == "unknown"
    assert (await tenant.client.get("/v1/events", params={"delivery_configuration_id": configuration["id"]})
            ).json()["data"] == []
    assert (await tenant.client.get("/v1/events", params={"id": result["event"]["id"]})).json()["data"] == []
    assert (await tenant.client.get(f"/v1/events/{result['event']['id']}")).status_code == 404


async def test_another_company_cannot_test_and_bad_input_names_the_field(tenant, other_tenant, receiver):
    path = unique_path("test-event-refused")
    configuration = await realtime_configuration(tenant, receiver.url(path))
    url = f"/v1/delivery-configurations/{configuration['id']}/test"
    assert (await other_tenant.client.post(url, json={"event_type": "message.sent"})).status_code == 404
    for body, loc in (({}, ["event_type"]), ({"event_type": "no.such.type"}, ["event_type"]),
                      ({"event_type": "message.sent", "topic": "NIS-Events"}, ["event_type"]),
                      ({"event_type": "message.sent", "extra": 1}, ["extra"])):
        response = await tenant.client.post(url, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["loc"] == loc, (body, response.json())
    assert receiver.requests[path] == []


async def test_a_test_event_answers_the_configurations_timeout_as_its_attempt(tenant, receiver):
    path = unique_path("test-event-slow")
    receiver.script(path, delay=4)
    configuration = await realtime_configuration(tenant, receiver.url(path), policy={"timeout_seconds": 1})
    await settle()
    response = await tenant.client.post(f"/v1/delivery-configurations/{configuration['id']}/test",
                                        json={"event_type": "message.failed"})
    assert response.status_code == 200, response.text
    [attempt] = response.json()["attempts"]
    assert attempt["http_status"] is None and attempt["error"] == "timeout after 1s"
    assert 900 <= attempt["duration_ms"] < 3000
    assert len(receiver.requests[path]) == 1, "sent once: a test is never retried"
