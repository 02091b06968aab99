"""Reporting and actions: search, republish, handled, dashboard, bulk actions, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.scheduler.retention import purge_older_than
from shared.db import create_pool
from tests.conftest import eventually, realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import attempts_of, publish, wait_for_status


async def test_search_filters_and_stable_cursor_pagination(tenant, source, receiver):
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    subscription = await subscribe(tenant, configuration["id"], event_types=["message.sent"])
    await settle()
    sent = await publish(source, tenant, count=7, subject="+14155550123")
    others = await publish(source, tenant, count=3, topic="SCG-Contact", event_type="contact.created")
    for event_id in sent:
        await wait_for_status(tenant, event_id, "delivered")

    async def search(**params):
        response = await tenant.client.get("/v1/events", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def all_contacts():
        found = await search(topic="SCG-Contact")
        return found if len(found["data"]) == 3 else None

    assert {e["id"] for e in (await eventually(all_contacts))["data"]} == set(others)
    assert {e["id"] for e in (await search(topic="SCG-Message"))["data"]} == set(sent)
    assert {e["id"] for e in (await search(status="delivered"))["data"]} == set(sent)
    assert (await search(status="failed"))["data"] == []
    assert {e["id"] for e in (await search(subscription_id=subscription["id"]))["data"]} == set(sent)
    assert {e["id"] for e in (await search(delivery_configuration_id=configuration["id"]))["data"]} == set(sent)
    assert {e["id"] for e in (await search(subject="+14155550123"))["data"]} == set(sent)
    assert [e["id"] for e in (await search(id=sent[0]))["data"]] == [sent[0]]
    assert (await search(event_type="contact.created", topic="SCG-Message"))["data"] == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await search(**{"from": future}))["data"] == []
    assert len((await search(to=future))["data"]) == 10

    first = await search(limit=4)
    everything = (await search(limit=100))["data"]
    times = [(e["received_at"], e["id"]) for e in everything]
    assert times == sorted(times, reverse=True), "newest first"
    for event_id in await publish(source, tenant, count=2):  # new events must not shift the pages already cut
        await wait_for_status(tenant, event_id, "delivered")
    pages, cursor = [first["data"]], first["next_cursor"]
    while cursor:
        page = await search(limit=4, cursor=cursor)
        pages.append(page["data"])
        cursor = page["next_cursor"]
    paged = [e["id"] for page in pages for e in page]
    assert paged == [e["id"] for e in everything]
    bad = await tenant.client.get("/v1/events", params={"cursor": "!!!"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "cursor"]
    bad_status = await tenant.client.get("/v1/events", params={"status": "lost"})
    assert bad_status.status_code == 422 and bad_status.json()["errors"][0]["loc"] == ["query", "status"]


async def failed_deliveries(tenant, source, receiver, count: int) -> tuple[str, dict, list[str]]:
    """`count` events whose only delivery failed (the endpoint answers 400), and the endpoint's path."""
    path = unique_path()
    receiver.script(path, default=400)
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await settle()
    ids = await publish(source, tenant, count=count)
    for event_id in ids:
        await wait_for_status(tenant, event_id, "failed")
    return path, configuration, ids


async def test_republish_and_handled(tenant, source, receiver):
    path, configuration, [event_id] = await failed_deliveries(tenant, source, receiver, 1)

    receiver.script(path, default=200)
    response = await tenant.client.post(f"/v1/events/{event_id}/republish")
    assert response.status_code == 202 and response.json() == {"event_id": event_id, "deliveries": 1}
    await wait_for_status(tenant, event_id, "delivered")
    assert [a["http_status"] for a in await attempts_of(tenant, event_id)] == [400, 200]

    # Delivered events can be republished too, through one configuration.
    again = await tenant.client.post(f"/v1/events/{event_id}/republish",
                                     json={"delivery_configuration_id": configuration["id"]})
    assert again.status_code == 202
    await receiver.wait_for(path, 3)
    await wait_for_status(tenant, event_id, "delivered")
    wrong = await tenant.client.post(f"/v1/events/{event_id}/republish",
                                     json={"delivery_configuration_id": "dc_other"})
    assert wrong.status_code == 422

    handled = await tenant.client.post(f"/v1/events/{event_id}/handled")
    assert handled.json() == {"event_id": event_id, "deliveries": 1}
    view = (await tenant.client.get(f"/v1/events/{event_id}")).json()
    assert view["status"] == "handled" and view["deliveries"][0]["status"] == "handled"


async def test_dashboard_counts_and_endpoint_health(tenant, source, receiver):
    good_path, bad_path = unique_path(), unique_path()
    receiver.script(bad_path, default=400)
    good = await realtime_configuration(tenant, receiver.url(good_path))
    bad = await realtime_configuration(tenant, receiver.url(bad_path))
    await subscribe(tenant, good["id"])
    await subscribe(tenant, bad["id"])
    await settle()
    ids = await publish(source, tenant, count=4)
    for event_id in ids:
        await wait_for_status(tenant, event_id, "delivered", configuration_id=good["id"])
        await wait_for_status(tenant, event_id, "failed", configuration_id=bad["id"])
    await tenant.client.post(f"/v1/events/{ids[0]}/handled")

    board = {c["delivery_configuration_id"]: c for c in (await tenant.client.get("/v1/dashboard")).json()["data"]}
    assert board[good["id"]]["counts"] == {"queued": 0, "pending_retry": 0, "failed": 0, "delivered": 3,
                                           "handled": 1, "buffered": 0, "held": 0}
    assert board[bad["id"]]["counts"]["failed"] == 3 and board[bad["id"]]["counts"]["handled"] == 1
    assert board[good["id"]]["last_success_at"] is not None and board[good["id"]]["last_failure_at"] is None
    assert board[bad["id"]]["last_failure_at"] is not None and board[bad["id"]]["last_success_at"] is None
    [good_endpoint] = board[good["id"]]["endpoints"]
    [bad_endpoint] = board[bad["id"]]["endpoints"]
    assert good_endpoint["health"] == "healthy" and good_endpoint["success_rate"] == 1.0
    assert bad_endpoint["health"] == "failing" and bad_endpoint["last_error"] == "HTTP 400"


async def test_bulk_republish_of_failed_deliveries(tenant, source, receiver):
    path, configuration, ids = await failed_deliveries(tenant, source, receiver, 25)
    receiver.script(path, default=200)
    response = await tenant.client.post("/v1/bulk-actions", json={
        "action": "republish",
        "filter": {"status": "failed", "delivery_configuration_id": configuration["id"],
                   "from": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    async def finished():
        job = (await tenant.client.get(f"/v1/bulk-actions/{job_id}")).json()
        return job if job["status"] == "completed" else None

    job = await eventually(finished)
    assert job["total"] == 25 and job["processed"] == 25
    for event_id in ids:
        await wait_for_status(tenant, event_id, "delivered")
    invalid = await tenant.client.post("/v1/bulk-actions", json={"action": "handled", "filter": {"status": "lost"}})
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["loc"] == ["filter", "status"]


async def test_retention_purges_old_events_and_attempts_only(stack, tenant, source, receiver):
    path = unique_path()
    configuration = await realtime_configuration(tenant, receiver.url(path))
    await subscribe(tenant, configuration["id"])
    await settle()
    old, recent = await publish(source, tenant, count=2)
    await wait_for_status(tenant, old, "delivered")
    await wait_for_status(tenant, recent, "delivered")
    pool = await create_pool(stack.env["EM_DATABASE_URL"], size=2)
    try:
        long_ago = datetime.now(UTC) - timedelta(days=40)
        await pool.execute("UPDATE events SET received_at = $3 WHERE company_id = $1 AND id = $2",
                           tenant.id, old, long_ago)
        await pool.execute("UPDATE delivery_attempts SET started_at = $3 WHERE company_id = $1 AND event_id = $2",
                           tenant.id, old, long_ago)
        totals = await purge_older_than(pool, datetime.now(UTC) - timedelta(days=30))
        assert totals["events"] >= 1 and totals["delivery_attempts"] >= 1
        left = await pool.fetchval("SELECT count(*) FROM deliveries WHERE company_id = $1 AND event_id = $2",
                                   tenant.id, old)
        assert left == 0
    finally:
        await pool.close()
    assert (await tenant.client.get(f"/v1/events/{old}")).status_code == 404
    assert (await tenant.client.get(f"/v1/events/{recent}")).status_code == 200


@pytest.mark.parametrize("service", ["api", "ingest"])
async def test_openapi_documents_every_route(urls, service):
    import httpx

    base = urls.api if service == "api" else urls.ingest
    async with httpx.AsyncClient(base_url=base) as client:
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schemas = spec["components"]["schemas"]
    for route, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                content = operation["requestBody"]["content"]["application/json"]
                ref = content.get("schema", {}).get("$ref", "")
                assert {"example", "examples"} & set(content) or "examples" in schemas.get(ref.split("/")[-1], {}), \
                    f"{method.upper()} {route} has no request example"
            assert operation.get("summary"), f"{method.upper()} {route} has no summary"
            assert operation.get("description"), f"{method.upper()} {route} has no description"
            assert operation.get("tags"), f"{method.upper()} {route} has no tags"


async def test_bulk_actions_select_like_the_search(tenant, source, receiver):
    path, configuration, ids = await failed_deliveries(tenant, source, receiver, 3)
    chosen = await publish(source, tenant, count=2, subject="+14155550999")
    for event_id in chosen:
        await wait_for_status(tenant, event_id, "failed")
    searched = (await tenant.client.get("/v1/events", params={"subject": "+14155550999", "status": "failed"})).json()
    assert sorted(e["id"] for e in searched["data"]) == sorted(chosen)
    response = await tenant.client.post("/v1/bulk-actions", json={
        "action": "handled", "filter": {"subject": "+14155550999", "status": "failed"}})
    job_id = response.json()["id"]

    async def finished():
        job = (await tenant.client.get(f"/v1/bulk-actions/{job_id}")).json()
        return job if job["status"] == "completed" else None

    assert (await eventually(finished))["processed"] == 2
    for event_id in chosen:
        await wait_for_status(tenant, event_id, "handled")
    for event_id in ids:
        await wait_for_status(tenant, event_id, "failed")
