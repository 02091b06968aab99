"""Bad input to the operator's and companies' access routes (issue 16), found by a bad-input hunt:
each is a 422 naming the field, never a silent conversion that changes a tenant's state."""

from __future__ import annotations

import uuid

import pytest

from tests.test_edges import locs


async def _source(admin) -> dict:
    response = await admin.post("/v1/admin/sources", json={"name": f"gw-{uuid.uuid4().hex[:6]}",
                                                           "topics": ["SCG-Message"]})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("value", [True, "60", 60.0])
async def test_a_company_limit_is_a_json_integer(admin, other_tenant, value):
    response = await admin.patch(f"/v1/admin/companies/{other_tenant.id}", json={"rate_limit_per_minute": value})
    assert response.status_code == 422 and ["rate_limit_per_minute"] in locs(response), response.text
    shown = (await admin.patch(f"/v1/admin/companies/{other_tenant.id}", json={"rate_limit_per_minute": None}))
    assert shown.json()["rate_limit_per_minute"] is None  # nothing was applied


@pytest.mark.parametrize("value", ["no", "yes", 1, 0])
async def test_enabled_is_a_json_boolean(admin, tenant, value):
    source = await _source(admin)
    refused = await admin.patch(f"/v1/admin/sources/{source['id']}", json={"enabled": value})
    assert refused.status_code == 422 and ["enabled"] in locs(refused), refused.text
    assert (await admin.get(f"/v1/admin/sources/{source['id']}")).json()["enabled"] is True
    application = await admin.patch(f"/v1/admin/applications/{tenant.application_id}",
                                    json={"event_manager_enabled": value})
    assert application.status_code == 422 and ["event_manager_enabled"] in locs(application)
    assert (await tenant.client.get("/v1/topics")).status_code == 200  # still enabled


async def test_topic_names_are_bounded_and_404s_do_not_echo_unbounded_ids(admin, tenant):
    response = await admin.post("/v1/admin/sources", json={"name": "gw", "topics": ["a" * 100_000]})
    assert response.status_code == 422 and ["topics", 0] in locs(response)
    assert len(response.content) < 5_000
    missing = await tenant.client.get(f"/v1/api-keys/{'x' * 5_000}")
    assert missing.status_code == 404 and len(missing.content) < 2_000


async def test_audit_log_filters_refuse_nonsense(tenant, admin):
    for client, path in ((tenant.client, "/v1/audit-log"), (admin, "/v1/admin/audit-log")):
        backwards = await client.get(path, params={"from": "2027-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"})
        assert backwards.status_code == 422, backwards.text
        unknown = await client.get(path, params={"actor_kind": "nope"})
        assert unknown.status_code == 422 and ["query", "actor_kind"] in locs(unknown), unknown.text
        assert (await client.get(path, params={"actor_kind": "operator"})).status_code == 200


async def test_a_single_valued_query_parameter_given_twice_is_refused(tenant, admin):
    # Otherwise one value would be used and the other silently dropped (a fuzzer found it).
    for client, path, name in ((tenant.client, "/v1/audit-log", "resource_type"),
                               (admin, "/v1/admin/audit-log", "action"), (tenant.client, "/v1/events", "topic")):
        twice = await client.get(path, params=[(name, "a"), (name, "b")])
        assert twice.status_code == 422 and ["query", name] in locs(twice), twice.text
        assert (await client.get(path, params=[(name, "a")])).status_code == 200
