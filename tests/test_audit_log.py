"""The audit log (issue 16): each change recorded with its actor, time and address and the
non-secret fields before and after; secrets and monitored numbers never in a record; a failed
change leaves none; a company sees its own only; rows cannot be updated; retention removes old
ones; cursor pagination."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.scheduler.retention import purge_older_than
from shared.db import asyncpg_dsn, create_pool
from tests.conftest import realtime_configuration, unique_path

PASSWORD, NEW_PASSWORD = "pw-" + uuid.uuid4().hex, "pw-" + uuid.uuid4().hex
NUMBER = "+1415555" + str(uuid.uuid4().int)[:4]


async def audit_records(client, path: str = "/v1/audit-log", **params) -> list[dict]:
    """Every record the listing has for these filters, walking its pages (oldest first)."""
    records, cursor = [], None
    while True:
        response = await client.get(path, params={**params, "limit": 500, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        records += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            return records[::-1]


async def own_changes(tenant) -> list[dict]:
    """The records of what the tenant's key changed (not the operator's, who made the tenant)."""
    return await audit_records(tenant.client, actor_kind="api_key")


async def test_each_change_is_listed_with_its_actor_address_and_fields(tenant, receiver):
    configuration = await realtime_configuration(
        tenant, receiver.url(unique_path()), authentication={"type": "basic", "username": "crm", "password": PASSWORD})
    url = f"/v1/delivery-configurations/{configuration['id']}"
    endpoint_id = configuration["endpoints"][0]["id"]
    steps = [
        ("patch", url, {"name": "renamed", "authentication": {"type": "basic", "username": "crm",
                                                              "password": NEW_PASSWORD}}),
        ("post", f"{url}/pause", None),
        ("post", f"{url}/resume", None),
        ("post", f"{url}/endpoints/{endpoint_id}/enable", {"republish_failed": False}),
        ("post", f"{url}/signing-secret/rotate", {"grace_seconds": 60}),
        ("post", f"{url}/signing-secret/revoke-previous", None),
        ("post", f"{url}/signing-secret/reveal", None),
        ("get", "/v1/signing-keys", None),
        ("post", "/v1/monitored-numbers", {"numbers": [NUMBER]}),
        ("delete", "/v1/monitored-numbers", {"numbers": [NUMBER]}),
        ("post", "/v1/bulk-actions", {"action": "handled", "filter": {"delivery_configuration_id": "dc_none"}}),
    ]
    answers = []
    for method, path, body in steps:
        response = await tenant.client.request(method, path, json=body)
        assert response.status_code in (200, 202), (path, response.text)
        answers.append(response.json())
    rotated, revealed = answers[4]["signing_secret"], answers[6]["signing_secret"]
    subscription = (await tenant.client.post("/v1/subscriptions", json={
        "topic": "SCG-Message", "delivery_configuration_id": configuration["id"],
        "start_at": "2020-01-01T00:00:00Z"})).json()
    assert (await tenant.client.patch(f"/v1/subscriptions/{subscription['id']}",
                                      json={"event_types": ["message.sent"]})).status_code == 200
    assert (await tenant.client.delete(f"/v1/subscriptions/{subscription['id']}")).status_code == 204
    assert (await tenant.client.delete(url)).status_code == 204

    records = await own_changes(tenant)
    assert [r["action"] for r in records] == [
        "delivery_configuration.create", "delivery_configuration.update", "delivery_configuration.pause",
        "delivery_configuration.resume", "delivery_configuration.endpoint_enable", "signing_secret.rotate",
        "signing_secret.revoke_previous", "signing_secret.reveal", "signing_key.create", "monitored_numbers.add",
        "monitored_numbers.remove", "bulk_action.create", "subscription.create", "subscription.update",
        "subscription.delete", "delivery_configuration.delete"]
    for record in records:
        assert record["company_id"] == tenant.id
        assert record["actor"] == {"kind": "api_key", "id": tenant.application_id, "name": "crm",
                                   "address": "127.0.0.1"}
    by_action = {r["action"]: r for r in records}
    update = by_action["delivery_configuration.update"]
    assert update["before"] == {"name": "crm-realtime"}
    assert update["after"] == {"name": "renamed", "secrets": {"password": "changed"}}
    assert by_action["delivery_configuration.create"]["after"]["secrets"] == {"password": "set",
                                                                            "signing_secret": "set"}
    assert by_action["subscription.update"]["before"] == {"event_types": []}
    assert by_action["subscription.update"]["after"] == {"event_types": ["message.sent"]}
    assert by_action["monitored_numbers.add"]["after"] == {"requested": 1, "added": 1}
    assert by_action["delivery_configuration.delete"]["before"]["name"] == "renamed"
    listed = str(records)
    for secret in (PASSWORD, NEW_PASSWORD, configuration["signing_secret"], rotated, revealed, NUMBER):
        assert secret and secret not in listed


async def test_filters_select_by_resource_action_actor_and_time(tenant, receiver):
    first = await realtime_configuration(tenant, receiver.url(unique_path()))
    second = await realtime_configuration(tenant, receiver.url(unique_path()))
    await tenant.client.post(f"/v1/delivery-configurations/{second['id']}/pause")
    only_second = await audit_records(tenant.client, resource_type="delivery_configuration", resource_id=second["id"])
    assert [r["action"] for r in only_second] == ["delivery_configuration.create", "delivery_configuration.pause"]
    pauses = await audit_records(tenant.client, action="delivery_configuration.pause")
    assert [r["resource_id"] for r in pauses] == [second["id"]]
    assert len(await audit_records(tenant.client, actor_id=tenant.application_id)) == 3
    assert await audit_records(tenant.client, actor_id="app_nobody") == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await audit_records(tenant.client, **{"from": future}) == []
    assert len(await audit_records(tenant.client, to=future, actor_kind="api_key")) == 3
    assert first["id"] in {r["resource_id"] for r in await own_changes(tenant)}


async def test_a_failed_change_leaves_no_record(tenant, receiver):
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    refused = await tenant.client.patch(f"/v1/delivery-configurations/{configuration['id']}",
                                        json={"endpoints": [{"url": "http://169.254.169.254/x", "active": True}]})
    assert refused.status_code == 422
    missing = await tenant.client.post("/v1/events/evt_missing/handled")
    assert missing.status_code == 404
    assert [r["action"] for r in await own_changes(tenant)] == ["delivery_configuration.create"]


async def test_another_company_never_sees_the_records(tenant, other_tenant, admin, receiver):
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    assert await own_changes(other_tenant) == []
    assert {r["company_id"] for r in await audit_records(other_tenant.client)} <= {other_tenant.id}
    assert await audit_records(other_tenant.client, resource_id=configuration["id"]) == []
    # The operator sees every company's, and can select one.
    theirs = await audit_records(admin, "/v1/admin/audit-log", company_id=tenant.id, actor_kind="api_key")
    assert [r["resource_id"] for r in theirs] == [configuration["id"]]
    assert await audit_records(admin, "/v1/admin/audit-log", company_id=other_tenant.id, actor_kind="api_key") == []
    assert (await other_tenant.client.get("/v1/admin/audit-log")).status_code == 401


async def test_operator_wide_changes_are_listed_for_the_operator_only(tenant, admin):
    topic = f"Test-{uuid.uuid4().hex[:8]}"
    created = await admin.post("/v1/admin/topics", json={"name": topic, "service": "test", "description": "t",
                                                         "event_types": [{"name": "thing.done"}]})
    assert created.status_code == 201, created.text
    assert (await admin.patch(f"/v1/admin/topics/{topic}", json={"validation_mode": "warn"})).status_code == 200
    records = await audit_records(admin, "/v1/admin/audit-log", resource_id=topic)
    assert [(r["action"], r["company_id"], r["actor"]["kind"]) for r in records] == [
        ("topic.create", None, "operator"), ("topic.update", None, "operator")]
    assert records[1]["before"] == {"validation_mode": "off"} and records[1]["after"] == {"validation_mode": "warn"}
    assert await audit_records(tenant.client, resource_id=topic) == []
    # Making the tenant: the operator's records, listed for the company too.
    made = await audit_records(tenant.client, actor_kind="operator")
    assert [r["action"] for r in made][:2] == ["company.create", "application.create"]


async def test_pages_follow_the_cursor_without_gaps_or_repeats(tenant):
    before = len(await audit_records(tenant.client))  # the operator's, making the tenant
    for index in range(5):
        response = await tenant.client.post("/v1/monitored-numbers", json={"numbers": [f"+1415555{index:04d}"]})
        assert response.status_code == 200
    seen, cursor = [], None
    while True:
        page = (await tenant.client.get("/v1/audit-log", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
                                        )).json()
        assert len(page["data"]) <= 2
        seen += [r["id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == before + 5
    occurred = [r["occurred_at"] for r in (await tenant.client.get("/v1/audit-log")).json()["data"]]
    assert occurred == sorted(occurred, reverse=True)  # newest first
    forged = await tenant.client.get("/v1/audit-log", params={"cursor": "eyJ4Ijox.AAAA"})
    assert forged.status_code == 422 and forged.json()["errors"][0]["loc"] == ["query", "cursor"]


async def test_the_database_refuses_to_update_a_record_and_retention_deletes_old_ones(stack, tenant):
    await tenant.client.post("/v1/monitored-numbers", json={"numbers": ["+14155550199"]})
    [record] = await own_changes(tenant)
    connection = await asyncpg.connect(asyncpg_dsn(stack.env["EM_DATABASE_URL"]))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await connection.execute("UPDATE audit_log SET action = 'nothing' WHERE id = $1", record["id"])
        await connection.execute(
            "INSERT INTO audit_log (id, company_id, occurred_at, actor_kind, action, resource_type) "
            "VALUES ($1, $2, now() - interval '40 days', 'api_key', 'old.change', 'test')", "aud_old_" + tenant.id,
            tenant.id)
    finally:
        await connection.close()
    assert len(await own_changes(tenant)) == 2
    pool = await create_pool(stack.env["EM_DATABASE_URL"], size=1)
    try:
        totals = await purge_older_than(pool, datetime.now(UTC) - timedelta(days=30))
    finally:
        await pool.close()
    assert totals["audit_log"] >= 1
    assert [r["id"] for r in await own_changes(tenant)] == [record["id"]]


async def test_a_console_link_is_recorded_and_the_company_never_sees_the_operators_address(tenant, admin):
    minted = await admin.post(f"/v1/admin/companies/{tenant.id}/console-sessions", json={})
    assert minted.status_code == 201, minted.text
    [operators_view] = await audit_records(admin, "/v1/admin/audit-log", company_id=tenant.id,
                                           action="console_link.create")
    assert operators_view["actor"]["kind"] == "operator" and operators_view["actor"]["address"] == "127.0.0.1"
    assert operators_view["after"]["expires_at"] and minted.json()["url"].split("token=")[1] not in str(operators_view)
    [companys_view] = await audit_records(tenant.client, action="console_link.create")
    assert companys_view["id"] == operators_view["id"] and companys_view["actor"]["address"] is None
    assert all(r["actor"]["address"] is None for r in await audit_records(tenant.client, actor_kind="operator"))
