"""Walk every company-scoped route of the api with another company's key: 404s, never data; and
with a key lacking the route's scope: 403 naming it. The routes come from the OpenAPI document,
so a new route is walked without editing this test, and one that declares no scope fails it."""

from __future__ import annotations

import re

import httpx

from tests.conftest import realtime_configuration, settle, subscribe, unique_path
from tests.delivery_helpers import publish, wait_for_status


async def test_every_company_route_hides_other_companies_objects(tenant, other_tenant, admin, source, receiver):
    configuration = await realtime_configuration(tenant, receiver.url(unique_path()))
    subscription = await subscribe(tenant, configuration["id"])
    await settle()
    [event_id] = await publish(source, tenant)
    await wait_for_status(tenant, event_id, "delivered")
    job = (await tenant.client.post("/v1/bulk-actions", json={"action": "handled",
                                                              "filter": {"status": "failed"}})).json()
    key = (await tenant.client.post("/v1/api-keys", json={"name": "walked", "scopes": ["read"]})).json()
    objects = {
        "delivery-configurations": configuration["id"],
        "subscriptions": subscription["id"],
        "events": event_id,
        "bulk-actions": job["id"],
        "buffer-files": "buf_none",  # no file exists; the route must still say 404, not 500
        "api-keys": key["id"],
    }
    spec = (await admin.get("/openapi.json")).json()
    walked = []
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1/") or path.startswith("/v1/admin") or "{" not in path:
            continue
        resource = path.split("/")[2]
        if resource not in objects:
            assert resource == "topics", f"no object to walk {path} with"
            continue
        concrete = re.sub(r"\{[^}]+\}", objects[resource], path)
        for method in operations:
            body = {} if method in ("post", "patch", "put") else None
            response = await other_tenant.client.request(method.upper(), concrete, json=body)
            assert response.status_code == 404, f"{method.upper()} {concrete}: {response.status_code} {response.text}"
            assert set(response.json()) <= {"type", "title", "status", "detail", "errors"}, "a problem, no data"
            walked.append(f"{method.upper()} {path}")
    assert len(walked) >= 12, walked

    # The owner still sees everything, and lists never leak across companies.
    assert (await tenant.client.get(f"/v1/subscriptions/{subscription['id']}")).status_code == 200
    for listing in ("/v1/delivery-configurations", "/v1/subscriptions", "/v1/events", "/v1/buffer-files",
                    "/v1/bulk-actions", "/v1/dashboard", "/v1/monitored-numbers", "/v1/api-keys"):
        response = await other_tenant.client.get(listing)
        assert response.status_code == 200, listing
        assert configuration["id"] not in response.text and event_id not in response.text, listing


async def test_credentials_are_required_and_disabled_applications_refused(tenant, admin, urls):
    import httpx

    async with httpx.AsyncClient(base_url=urls.api) as anonymous:
        for path in ("/v1/events", "/v1/topics", "/v1/admin/companies"):
            response = await anonymous.get(path)
            assert response.status_code == 401 and response.headers["content-type"] == "application/problem+json"
        wrong = await anonymous.get("/v1/events", headers={"authorization": "Bearer emk_wrong"})
        assert wrong.status_code == 401
        as_operator = await anonymous.get("/v1/admin/companies", headers={"authorization": f"Bearer {tenant.api_key}"})
        assert as_operator.status_code == 401
    assert (await admin.patch(f"/v1/admin/applications/{tenant.application_id}",
                              json={"event_manager_enabled": False})).status_code == 200
    assert (await tenant.client.get("/v1/events")).status_code == 403
    await admin.patch(f"/v1/admin/applications/{tenant.application_id}", json={"event_manager_enabled": True})
    rotated = (await admin.post(f"/v1/admin/applications/{tenant.application_id}/rotate-key")).json()["api_key"]
    assert (await tenant.client.get("/v1/events")).status_code == 401, "the old key stops working"
    tenant.client.headers["authorization"] = f"Bearer {rotated}"
    assert (await tenant.client.get("/v1/events")).status_code == 200


# --- scopes (services/api/scopes.py) ------------------------------------------------------------

SCOPES = ("read", "write", "bulk")
# For each scope a route may need, a key scope that does not grant it (write includes read; bulk
# is apart).
LACKING = {"read": "bulk", "write": "read", "bulk": "write"}


def company_operations(spec: dict):
    """(method, path, operation) of every company operation: /v1, not /v1/admin, bearer-authenticated
    (the console's sign-in routes take no bearer token)."""
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1/") or path.startswith("/v1/admin"):
            continue
        for method, operation in operations.items():
            if operation.get("security") != []:
                yield method, path, operation


async def test_every_company_route_declares_its_scope(admin):
    spec = (await admin.get("/openapi.json")).json()
    undeclared = [f"{method.upper()} {path}" for method, path, operation in company_operations(spec)
                  if operation.get("x-required-scope") not in SCOPES]
    assert undeclared == [], "take Reader, Writer or Bulk (services/api/deps.py) instead of no scope"
    assert all(op["security"] == [{"bearer": [op["x-required-scope"]]}] for _, _, op in company_operations(spec))
    assert "**Scope:** `bulk`" in spec["paths"]["/v1/events/{event_id}/republish"]["post"]["description"]


async def test_every_company_route_refuses_a_key_lacking_its_scope(tenant, admin, urls):
    keys = {}
    for scope in SCOPES:
        created = await tenant.client.post("/v1/api-keys", json={"name": f"only-{scope}", "scopes": [scope]})
        assert created.status_code == 201, created.text
        keys[scope] = {"authorization": f"Bearer {created.json()['key']}"}
    spec = (await admin.get("/openapi.json")).json()
    walked: dict[str, int] = dict.fromkeys(SCOPES, 0)
    async with httpx.AsyncClient(base_url=urls.api, timeout=30) as client:
        for method, path, operation in company_operations(spec):
            scope = operation["x-required-scope"]
            # Objects that do not exist: the scope is checked before anything is looked up.
            concrete = re.sub(r"\{[^}]+\}", "none_walked", path)
            body = {} if method in ("post", "patch", "put", "delete") else None
            refused = await client.request(method.upper(), concrete, json=body, headers=keys[LACKING[scope]])
            where = f"{method.upper()} {path} with a {LACKING[scope]} key"
            assert refused.status_code == 403, f"{where}: {refused.status_code} {refused.text}"
            assert refused.headers["content-type"] == "application/problem+json", where
            assert f"`{scope}`" in refused.json()["detail"], where
            held = await client.request(method.upper(), concrete, json=body, headers=keys[scope])
            assert held.status_code != 403, f"{method.upper()} {path} with a {scope} key: {held.text}"
            walked[scope] += 1
    assert walked["read"] >= 20 and walked["write"] >= 15 and walked["bulk"] >= 3, walked
