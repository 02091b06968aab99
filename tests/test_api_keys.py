"""A company's own API keys (issue 16): shown once, listed without the secret, with scopes,
expiry, revocation and rotation with an overlap, each refused at once on every api replica; the
operator's application switch still gates them; console sessions keep the key's scopes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.api.store.api_keys import MAX_LIVE_KEYS
from tests.conftest import eventually, realtime_configuration
from tests.test_console_sessions import Browser
from tests.test_edges import another_replica


@pytest.fixture(scope="module")
async def second_api(stack):
    """Another api replica beside the stack's, so "at once" is checked on both."""
    process, port = await another_replica(stack, "api")
    yield f"http://127.0.0.1:{port}"
    await asyncio.to_thread(process.stop)


async def make_key(tenant, scopes=("read",), **extra) -> dict:
    response = await tenant.client.post("/v1/api-keys", json={"name": "reporting", "scopes": list(scopes), **extra})
    assert response.status_code == 201, response.text
    return response.json()


async def answers(urls, second_api, key: str, path: str = "/v1/events") -> list[int]:
    """What each api replica answers a GET of `path` with `key`."""
    statuses = []
    for base in (urls.api, second_api):
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            statuses.append((await client.get(path, headers={"authorization": f"Bearer {key}"})).status_code)
    return statuses


async def test_a_key_is_shown_once_listed_without_its_secret_and_acts_as_itself(tenant, other_tenant, urls,
                                                                                  second_api):
    created = await make_key(tenant, scopes=["read", "write"])
    assert created["key"].startswith("emak_") and created["application_id"] == tenant.application_id
    assert created["scopes"] == ["read", "write"] and created["expires_at"] is None
    listed = (await tenant.client.get("/v1/api-keys")).json()
    assert created["id"] in [k["id"] for k in listed["data"]] and created["key"] not in str(listed)
    assert "key" not in (await tenant.client.get(f"/v1/api-keys/{created['id']}")).json()
    assert await answers(urls, second_api, created["key"]) == [200, 200]

    # Its changes are recorded as the key's, by id and name.
    async with httpx.AsyncClient(base_url=urls.api, timeout=30,
                                 headers={"authorization": f"Bearer {created['key']}"}) as client:
        assert (await client.post("/v1/monitored-numbers", json={"numbers": ["+14155550199"]})).status_code == 200
        records = (await client.get("/v1/audit-log", params={"actor_id": created["id"]})).json()["data"]
    assert records and records[0]["actor"]["kind"] == "api_key" and records[0]["actor"]["name"] == "reporting"

    for body, loc in (({"name": "x", "scopes": []}, ["scopes"]), ({"name": "x", "scopes": ["admin"]}, ["scopes", 0]),
                      ({"name": "x", "scopes": ["read", "read"]}, ["scopes"]),
                      ({"name": "x", "scopes": ["read"], "expires_at": _in(0.5)}, ["expires_at"]),
                      ({"name": "x", "scopes": ["read"], "key": "emak_mine"}, ["key"])):
        refused = await tenant.client.post("/v1/api-keys", json=body)
        assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == loc, (body, refused.text)
    other_application = await tenant.client.post("/v1/api-keys", json={
        "name": "x", "scopes": ["read"], "application_id": other_tenant.application_id})
    assert other_application.status_code == 404, "another company's application is not found"


# Overlaps and expiries the tests watch: long enough that the checks inside them finish first.
WINDOW = 20


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_revoked_and_expired_keys_are_refused_at_once_on_every_replica(tenant, urls, second_api):
    key = await make_key(tenant)
    revoked = await tenant.client.post(f"/v1/api-keys/{key['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert await answers(urls, second_api, key["key"]) == [401, 401]
    assert (await tenant.client.post(f"/v1/api-keys/{key['id']}/rotate", json={})).status_code == 409

    # A window far longer than the round trips before its end (a loaded machine is slow); its end
    # is waited for. The 1 s minimum is checked by validation (test above).
    expiring = await make_key(tenant, expires_at=_in(WINDOW))
    assert await answers(urls, second_api, expiring["key"]) == [200, 200]
    await eventually(lambda: _refused_everywhere(urls, second_api, expiring["key"]), timeout=3 * WINDOW)


async def _refused_everywhere(urls, second_api, key: str) -> bool:
    return await answers(urls, second_api, key) == [401, 401]


async def test_a_rotation_overlap_ends_and_can_be_ended_early(tenant, urls, second_api):
    key = await make_key(tenant)
    path = f"/v1/api-keys/{key['id']}"
    for overlap in (-1, 30 * 24 * 3600 + 1):
        refused = await tenant.client.post(f"{path}/rotate", json={"overlap_seconds": overlap})
        assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["overlap_seconds"]

    rotated = (await tenant.client.post(f"{path}/rotate", json={"overlap_seconds": WINDOW})).json()
    assert rotated["key"] != key["key"] and rotated["previous_expires_at"] is not None
    assert await answers(urls, second_api, key["key"]) == [200, 200], "both work during the overlap"
    assert await answers(urls, second_api, rotated["key"]) == [200, 200]
    await eventually(lambda: _refused_everywhere(urls, second_api, key["key"]), timeout=3 * WINDOW)
    assert await answers(urls, second_api, rotated["key"]) == [200, 200]

    again = (await tenant.client.post(f"{path}/rotate", json={"overlap_seconds": 3600})).json()
    assert await answers(urls, second_api, rotated["key"]) == [200, 200]
    ended = await tenant.client.post(f"{path}/revoke-previous")
    assert ended.status_code == 200 and ended.json()["previous_expires_at"] is None
    assert await answers(urls, second_api, rotated["key"]) == [401, 401]

    immediate = (await tenant.client.post(f"{path}/rotate", json={"overlap_seconds": 0})).json()
    assert immediate["previous_expires_at"] is None
    assert await answers(urls, second_api, again["key"]) == [401, 401], "overlap 0 refuses the old key at once"
    assert await answers(urls, second_api, immediate["key"]) == [200, 200]


async def test_the_application_switch_gates_every_key_and_its_own_key_keeps_every_scope(admin, tenant):
    key = await make_key(tenant)
    application = f"/v1/admin/applications/{tenant.application_id}"
    async with httpx.AsyncClient(base_url=str(tenant.client.base_url), timeout=30,
                                 headers={"authorization": f"Bearer {key['key']}"}) as client:
        assert (await admin.patch(application, json={"event_manager_enabled": False})).status_code == 200
        refused = await client.get("/v1/events")
        assert refused.status_code == 403 and "Event Manager" in refused.json()["detail"]
        await admin.patch(application, json={"event_manager_enabled": True})
        assert (await client.get("/v1/events")).status_code == 200
    # The application's own key (the operator's) holds every scope: bulk included.
    bulk = await tenant.client.post("/v1/bulk-actions", json={"action": "handled", "filter": {"status": "failed"}})
    assert bulk.status_code == 202, bulk.text


async def test_a_key_gives_and_rotates_only_scopes_it_holds(tenant):
    writer = await make_key(tenant, scopes=["write"])
    full = await make_key(tenant, scopes=["read", "write", "bulk"])
    async with httpx.AsyncClient(base_url=str(tenant.client.base_url), timeout=30,
                                 headers={"authorization": f"Bearer {writer['key']}"}) as client:
        refused = await client.post("/v1/api-keys", json={"name": "x", "scopes": ["read", "bulk"]})
        assert refused.status_code == 403 and refused.json()["errors"] == [
            {"loc": ["scopes"], "msg": "`bulk` is not held by the caller"}]
        assert (await client.post("/v1/api-keys", json={"name": "x", "scopes": ["read"]})).status_code == 201, \
            "write includes read"
        assert (await client.post(f"/v1/api-keys/{full['id']}/rotate", json={})).status_code == 403
        assert (await client.post(f"/v1/api-keys/{writer['id']}/rotate", json={})).status_code == 200


async def test_a_console_session_has_its_keys_scopes_and_ends_with_the_key(tenant, urls):
    reader = await make_key(tenant, scopes=["read"])
    browser = Browser(urls.api)
    try:
        signed_in = await browser.sign_in(reader["key"])
        assert signed_in.status_code == 200 and signed_in.json()["scopes"] == ["read"]
        assert signed_in.json()["api_key_id"] == reader["id"]
        assert (await browser.request("GET", "/v1/delivery-configurations")).status_code == 200
        refused = await browser.request("POST", "/v1/monitored-numbers", json={"numbers": ["+14155550100"]})
        assert refused.status_code == 403 and "`write`" in refused.json()["detail"]
        await tenant.client.post(f"/v1/api-keys/{reader['id']}/revoke")
        assert (await browser.request("GET", "/v1/delivery-configurations")).status_code == 401
    finally:
        await browser.aclose()
    full = Browser(urls.api)
    try:
        signed_in = await full.sign_in(tenant.api_key)
        assert signed_in.json()["scopes"] == ["bulk", "read", "write"], "the application's own key: every scope"
    finally:
        await full.aclose()


async def test_enabling_an_endpoint_with_republish_failed_also_needs_the_bulk_scope(urls, tenant, receiver):
    configuration = await realtime_configuration(tenant, receiver.url(f"/enable-{uuid.uuid4().hex[:8]}"))
    enable = f"/v1/delivery-configurations/{configuration['id']}/endpoints/{configuration['endpoints'][0]['id']}/enable"
    writer, bulk_too = await make_key(tenant, scopes=["write"]), await make_key(tenant, scopes=["write", "bulk"])
    async with httpx.AsyncClient(base_url=urls.api, timeout=30,
                                 headers={"authorization": f"Bearer {writer['key']}"}) as client:
        refused = await client.post(enable, json={"republish_failed": True})
        assert refused.status_code == 403 and "`bulk`" in refused.json()["detail"], refused.text
        assert (await client.post(enable, json={"republish_failed": False})).status_code == 200
    async with httpx.AsyncClient(base_url=urls.api, timeout=30,
                                 headers={"authorization": f"Bearer {bulk_too['key']}"}) as client:
        assert (await client.post(enable, json={"republish_failed": True})).status_code == 200
        operation = (await client.get("/openapi.json")).json()["paths"][
            "/v1/delivery-configurations/{configuration_id}/endpoints/{endpoint_id}/enable"]["post"]
    assert operation["x-required-scope-when"] == {"republish_failed": "bulk"}
    assert "`bulk`" in operation["responses"]["403"]["description"]


async def test_a_company_has_at_most_100_live_keys(tenant):
    keys = [await make_key(tenant) for _ in range(MAX_LIVE_KEYS)]
    refused = await tenant.client.post("/v1/api-keys", json={"name": "one too many", "scopes": ["read"]})
    assert refused.status_code == 409 and "revoke" in refused.json()["detail"], refused.text
    assert (await tenant.client.post(f"/v1/api-keys/{keys[0]['id']}/revoke")).status_code == 200
    await make_key(tenant)  # a revoked key makes room
    # The list comes in pages, oldest first, without gaps or repeats.
    listed, cursor = [], None
    while True:
        page = (await tenant.client.get("/v1/api-keys", params={"limit": 30, **({"cursor": cursor} if cursor else {})}))
        assert page.status_code == 200 and len(page.json()["data"]) <= 30, page.text
        listed += [key["id"] for key in page.json()["data"]]
        if not (cursor := page.json()["next_cursor"]):
            break
    assert listed[:MAX_LIVE_KEYS] == [key["id"] for key in keys] and len(listed) == MAX_LIVE_KEYS + 1
    assert (await tenant.client.get("/v1/api-keys", params={"cursor": "forged"})).status_code == 422


async def test_an_expired_key_cannot_be_rotated(tenant):
    key = await make_key(tenant, expires_at=_in(5))

    async def rotation_refused():
        rotated = await tenant.client.post(f"/v1/api-keys/{key['id']}/rotate", json={"overlap_seconds": 0})
        assert rotated.status_code in (200, 409), rotated.text
        return rotated.status_code == 409 and "expired" in rotated.json()["detail"]

    await eventually(rotation_refused)


async def test_a_rotation_deadline_is_on_the_database_clock(tenant, admin):
    """The overlap's end is the database's now() plus the overlap, the clock that checks it, not the
    api replica's: exactly `overlap_seconds` after the rotation's transaction began (its audit
    record's time, also now())."""
    key = await make_key(tenant)
    rotated = (await tenant.client.post(f"/v1/api-keys/{key['id']}/rotate", json={"overlap_seconds": 600})).json()
    [record] = (await tenant.client.get("/v1/audit-log", params={"resource_id": key["id"],
                                                                 "action": "api_key.rotate"})).json()["data"]
    ends = datetime.fromisoformat(rotated["previous_expires_at"])
    assert ends - datetime.fromisoformat(record["occurred_at"]) == timedelta(seconds=600)
    source = (await admin.post("/v1/admin/sources", json={"name": f"clock-{key['id'][-6:]}",
                                                          "topics": ["SCG-Message"]})).json()
    turned = (await admin.post(f"/v1/admin/sources/{source['id']}/rotate-token", json={"overlap_seconds": 600})).json()
    [record] = (await admin.get("/v1/admin/audit-log", params={"resource_id": source["id"],
                                                               "action": "source.rotate_token"})).json()["data"]
    ends = datetime.fromisoformat(turned["previous_token_expires_at"])
    assert ends - datetime.fromisoformat(record["occurred_at"]) == timedelta(seconds=600)
