"""The web console's cookie sessions and the operator's console links, over HTTP against the
session's real api service: cookie flags, CSRF, sign-out, keys that are disabled or rotated, time
limits, tenant rules, and one-time links. (The browser side is in tests/test_console.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

import asyncpg
import httpx
import pytest
from fastapi import Response

from services.api import sessions
from shared.db import asyncpg_dsn
from shared.security import digest
from shared.settings import Settings
from tests.conftest import realtime_configuration

COOKIE = "em_console"


def set_cookie(response: httpx.Response) -> SimpleCookie:
    [header] = response.headers.get_list("set-cookie")
    jar = SimpleCookie()
    jar.load(header)
    return jar


class Browser:
    """A client that holds the console cookie like a browser would (and never the key)."""

    def __init__(self, base: str):
        self.client = httpx.AsyncClient(base_url=base, timeout=30)
        self.cookie: str | None = None
        self.csrf: str | None = None

    async def sign_in(self, credential: str, **headers) -> httpx.Response:
        response = await self.client.post("/v1/console/session", json={"credential": credential}, headers=headers)
        if response.status_code == 200:
            self.cookie = set_cookie(response)[COOKIE].value
            self.csrf = response.json()["csrf_token"]
        return response

    async def request(self, method: str, path: str, csrf: bool = True, **kwargs) -> httpx.Response:
        headers = {"cookie": f"{COOKIE}={self.cookie}", **kwargs.pop("headers", {})}
        if csrf and self.csrf:
            headers["x-csrf-token"] = self.csrf
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def aclose(self):
        await self.client.aclose()


@pytest.fixture
async def browser(urls):
    browser = Browser(urls.api)
    yield browser
    await browser.aclose()


@pytest.fixture
async def database(stack):
    connection = await asyncpg.connect(asyncpg_dsn(stack.env["EM_DATABASE_URL"]))
    yield connection
    await connection.close()


async def test_sign_in_sets_a_strict_http_only_cookie_and_the_key_is_not_echoed(browser, tenant):
    response = await browser.sign_in(tenant.api_key)
    assert response.status_code == 200
    cookie = set_cookie(response)[COOKIE]
    assert cookie["httponly"] is True and cookie["samesite"] == "strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # EM_REQUIRE_HTTPS is off in the test stack
    assert int(cookie["max-age"]) == 12 * 3600
    assert tenant.api_key not in response.text and tenant.api_key not in cookie.value
    body = response.json()
    assert body["role"] == "company" and body["company_id"] == tenant.id
    assert body["application_id"] == tenant.application_id
    assert response.headers["cache-control"] == "no-store"
    # The cookie alone reads the company's data; GET /v1/console/session tells the same CSRF token.
    assert (await browser.request("GET", "/v1/delivery-configurations", csrf=False)).status_code == 200
    current = await browser.request("GET", "/v1/console/session", csrf=False)
    assert current.json()["csrf_token"] == body["csrf_token"]
    assert datetime.fromisoformat(current.json()["idle_expires_at"]) <= datetime.fromisoformat(body["expires_at"])


def test_with_require_https_the_cookie_is_secure_and_host_prefixed():
    settings = Settings(require_https=True, secret_key="s" * 32)
    response = Response()
    sessions.set_cookie(response, settings, "token")
    jar = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    cookie = jar["__Host-em_console"]
    assert cookie["secure"] is True and cookie["httponly"] is True and cookie["samesite"] == "strict"
    assert cookie["path"] == "/" and not cookie["domain"]
    cleared = Response()
    sessions.clear_cookie(cleared, settings)
    assert "__Host-em_console=" in cleared.headers["set-cookie"] and "Secure" in cleared.headers["set-cookie"]


async def test_a_change_with_the_cookie_needs_the_csrf_token(browser, tenant):
    await browser.sign_in(tenant.api_key)
    body = {"name": "via-console", "mode": "realtime", "endpoints": [{"url": "http://127.0.0.1:9/hook"}]}
    refused = await browser.request("POST", "/v1/delivery-configurations", csrf=False, json=body)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"] == [{"loc": ["header", "X-CSRF-Token"], "msg": "missing or wrong"}]
    wrong = await browser.request("POST", "/v1/delivery-configurations", csrf=False, json=body,
                                  headers={"x-csrf-token": "0" * 64})
    assert wrong.status_code == 403
    assert (await tenant.client.get("/v1/delivery-configurations")).json() == []
    created = await browser.request("POST", "/v1/delivery-configurations", json=body)
    assert created.status_code == 201
    # DELETE and PATCH too, and sign-out itself.
    path = f"/v1/delivery-configurations/{created.json()['id']}"
    assert (await browser.request("PATCH", path, csrf=False, json={"name": "x"})).status_code == 403
    assert (await browser.request("DELETE", path, csrf=False)).status_code == 403
    assert (await browser.request("DELETE", "/v1/console/session", csrf=False)).status_code == 403
    assert (await browser.request("GET", path, csrf=False)).status_code == 200
    # Integrations are unchanged: a bearer key needs no CSRF token.
    assert (await tenant.client.patch(path, json={"name": "renamed"})).status_code == 200


async def test_sign_out_ends_the_session_on_the_server(browser, tenant):
    await browser.sign_in(tenant.api_key)
    response = await browser.request("DELETE", "/v1/console/session")
    assert response.status_code == 204
    cleared = set_cookie(response)[COOKIE]
    assert cleared.value == "" and int(cleared["max-age"]) == 0
    # A copy of the cookie kept elsewhere no longer works.
    after = await browser.request("GET", "/v1/subscriptions", csrf=False)
    assert after.status_code == 401 and after.headers["content-type"] == "application/problem+json"
    # The console asks who is signed in: nobody (204, not an error the browser would log).
    assert (await browser.request("GET", "/v1/console/session")).status_code == 204
    assert (await browser.client.get("/v1/console/session")).status_code == 204


async def test_a_disabled_or_rotated_key_ends_its_sessions(urls, admin, tenant, database):
    first, second = Browser(urls.api), Browser(urls.api)
    try:
        await first.sign_in(tenant.api_key)
        await second.sign_in(tenant.api_key)
        assert (await admin.patch(f"/v1/admin/applications/{tenant.application_id}",
                                  json={"event_manager_enabled": False})).status_code == 200
        ended = await first.request("GET", "/v1/subscriptions")
        assert ended.status_code == 401 and ended.headers["content-type"] == "application/problem+json"
        # Enabling it again does not bring the ended session back.
        await admin.patch(f"/v1/admin/applications/{tenant.application_id}", json={"event_manager_enabled": True})
        assert (await first.request("GET", "/v1/subscriptions")).status_code == 401
        assert (await second.request("GET", "/v1/subscriptions")).status_code == 401
        assert (await first.sign_in(tenant.api_key)).status_code == 200
        assert (await admin.post(f"/v1/admin/applications/{tenant.application_id}/rotate-key")).status_code == 200
        assert (await first.request("GET", "/v1/subscriptions")).status_code == 401
        # However the key changed (another replica, by hand in the database), each request checks it.
        new_key = (await admin.post(f"/v1/admin/applications/{tenant.application_id}/rotate-key")).json()["api_key"]
        assert (await first.sign_in(new_key)).status_code == 200
        await database.execute("UPDATE applications SET event_manager_enabled = false WHERE id = $1",
                               tenant.application_id)
        disabled = await first.request("GET", "/v1/subscriptions")
        assert disabled.status_code == 401 and "disabled" in disabled.json()["detail"]
        await database.execute("UPDATE applications SET event_manager_enabled = true WHERE id = $1",
                               tenant.application_id)
        assert (await first.sign_in(new_key)).status_code == 200
        await database.execute("UPDATE applications SET api_key_digest = $2 WHERE id = $1",
                               tenant.application_id, digest("emk_elsewhere"))
        rotated = await first.request("GET", "/v1/subscriptions")
        assert rotated.status_code == 401 and "rotated" in rotated.json()["detail"]
    finally:
        await first.aclose()
        await second.aclose()


async def test_sign_in_refusals_name_the_credential(browser, admin, tenant):
    wrong = await browser.sign_in("emk_not-a-key")
    assert wrong.status_code == 401 and wrong.json()["errors"][0]["loc"] == ["credential"]
    assert "set-cookie" not in wrong.headers
    missing = await browser.client.post("/v1/console/session", json={})
    assert missing.status_code == 422 and missing.json()["errors"][0]["loc"] == ["credential"]
    cross_site = await browser.sign_in(tenant.api_key, **{"sec-fetch-site": "cross-site"})
    assert cross_site.status_code == 403 and "set-cookie" not in cross_site.headers
    form = await browser.client.post("/v1/console/session", content=f"credential={tenant.api_key}",
                                     headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    await admin.patch(f"/v1/admin/applications/{tenant.application_id}", json={"event_manager_enabled": False})
    disabled = await browser.sign_in(tenant.api_key)
    assert disabled.status_code == 403 and disabled.json()["errors"][0]["loc"] == ["credential"]


async def test_a_company_session_sees_only_its_company(urls, browser, tenant, other_tenant):
    mine = await realtime_configuration(tenant, "http://127.0.0.1:9/mine", active=False)
    theirs = await realtime_configuration(other_tenant, "http://127.0.0.1:9/theirs", active=False)
    await browser.sign_in(tenant.api_key)
    listed = (await browser.request("GET", "/v1/delivery-configurations")).json()
    assert [c["id"] for c in listed] == [mine["id"]]
    assert (await browser.request("GET", f"/v1/delivery-configurations/{theirs['id']}")).status_code == 404
    assert (await browser.request("DELETE", f"/v1/delivery-configurations/{theirs['id']}")).status_code == 404
    assert (await other_tenant.client.get(f"/v1/delivery-configurations/{theirs['id']}")).status_code == 200
    # A company session is not the operator.
    assert (await browser.request("GET", "/v1/admin/companies")).status_code == 401
    # A bearer header wins over the cookie: the other company's key sees the other company.
    other = await browser.request("GET", "/v1/delivery-configurations",
                                  headers={"authorization": f"Bearer {other_tenant.api_key}"})
    assert [c["id"] for c in other.json()] == [theirs["id"]]


async def test_operator_session(browser, stack, tenant):
    response = await browser.sign_in(stack.env["EM_ADMIN_TOKEN"])
    assert response.status_code == 200 and response.json()["role"] == "operator"
    assert response.json()["company_id"] is None
    assert stack.env["EM_ADMIN_TOKEN"] not in response.text
    assert (await browser.request("GET", "/v1/admin/companies")).status_code == 200
    assert (await browser.request("GET", "/v1/subscriptions")).status_code == 401
    refused = await browser.request("POST", "/v1/admin/companies", csrf=False, json={"name": "csrf"})
    assert refused.status_code == 403
    assert (await browser.request("POST", "/v1/admin/companies", json={"name": "via console"})).status_code == 201


async def test_idle_and_absolute_limits_end_a_session(browser, tenant, database):
    await browser.sign_in(tenant.api_key)
    session_id = digest(browser.cookie)
    await database.execute("UPDATE console_sessions SET last_seen_at = now() - interval '8 hours 1 minute' "
                           "WHERE id = $1", session_id)
    idle = await browser.request("GET", "/v1/subscriptions")
    assert idle.status_code == 401 and "idle" in idle.json()["detail"]
    assert await database.fetchval("SELECT count(*) FROM console_sessions WHERE id = $1", session_id) == 0
    await browser.sign_in(tenant.api_key)
    await database.execute("UPDATE console_sessions SET expires_at = now() - interval '1 second' WHERE id = $1",
                           digest(browser.cookie))
    assert (await browser.request("GET", "/v1/subscriptions")).status_code == 401


async def test_a_request_moves_the_idle_limit_at_most_once_a_minute(browser, tenant, database):
    await browser.sign_in(tenant.api_key)
    session_id = digest(browser.cookie)
    await database.execute("UPDATE console_sessions SET last_seen_at = now() - interval '2 hours' WHERE id = $1",
                           session_id)
    assert (await browser.request("GET", "/v1/subscriptions")).status_code == 200
    seen = await database.fetchval("SELECT last_seen_at FROM console_sessions WHERE id = $1", session_id)
    assert datetime.now(UTC) - seen < timedelta(minutes=1)


async def test_console_link_signs_the_company_in_once(urls, admin, tenant, other_tenant, database):
    minted = await admin.post(f"/v1/admin/companies/{tenant.id}/console-sessions")
    assert minted.status_code == 201
    link = minted.json()
    assert link["company_id"] == tenant.id and link["url"].startswith(f"{urls.api}/console/link?token=emc_")
    expires = datetime.fromisoformat(link["expires_at"])
    assert timedelta(minutes=4) < expires - datetime.now(UTC) <= timedelta(minutes=5)
    async with httpx.AsyncClient(timeout=30) as client:
        opened = await client.get(link["url"])
        assert opened.status_code == 303 and opened.headers["location"] == "/console/"
        assert opened.headers["referrer-policy"] == "no-referrer" and opened.headers["cache-control"] == "no-store"
        cookie = set_cookie(opened)[COOKIE]
        assert cookie["httponly"] is True and cookie["samesite"] == "strict"
        headers = {"cookie": f"{COOKIE}={cookie.value}"}
        session = (await client.get(f"{urls.api}/v1/console/session", headers=headers)).json()
        assert session["role"] == "company" and session["company_id"] == tenant.id
        assert session["application_id"] is None
        theirs = await realtime_configuration(other_tenant, "http://127.0.0.1:9/theirs", active=False)
        assert (await client.get(f"{urls.api}/v1/delivery-configurations/{theirs['id']}",
                                 headers=headers)).status_code == 404
        created = await client.post(f"{urls.api}/v1/delivery-configurations", headers={
            **headers, "x-csrf-token": session["csrf_token"]}, json={
            "name": "from-link", "mode": "realtime", "endpoints": [{"url": "http://127.0.0.1:9/hook"}]})
        assert created.status_code == 201
        assert [c["name"] for c in (await tenant.client.get("/v1/delivery-configurations")).json()] == ["from-link"]
        # Once only.
        again = await client.get(link["url"])
        assert again.status_code == 303 and again.headers["location"] == "/console/?link=expired"
        assert "set-cookie" not in again.headers
        # Expired: a link past its time signs nobody in.
        late = (await admin.post(f"/v1/admin/companies/{tenant.id}/console-sessions",
                                 json={"ttl_seconds": 30})).json()
        token = late["url"].split("token=")[1]
        await database.execute("UPDATE console_sessions SET expires_at = now() - interval '1 second' "
                               "WHERE id = $1", digest(token))
        expired = await client.get(late["url"])
        assert expired.status_code == 303 and expired.headers["location"] == "/console/?link=expired"
        assert "set-cookie" not in expired.headers
        unknown = await client.get(f"{urls.api}/console/link", params={"token": "emc_unknown"})
        assert unknown.headers["location"] == "/console/?link=expired"


async def test_console_link_refusals(admin, tenant):
    assert (await admin.post("/v1/admin/companies/cmp_nope/console-sessions")).status_code == 404
    too_long = await admin.post(f"/v1/admin/companies/{tenant.id}/console-sessions", json={"ttl_seconds": 7200})
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["loc"] == ["ttl_seconds"]
    assert (await tenant.client.post(f"/v1/admin/companies/{tenant.id}/console-sessions")).status_code == 401


async def test_console_link_is_documented_with_an_example(urls):
    async with httpx.AsyncClient(base_url=urls.api) as client:
        spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/admin/companies/{company_id}/console-sessions"]["post"]
    assert "once" in operation["description"]
    assert operation["responses"]["201"]["content"]["application/json"]["example"]["url"]
    assert operation["requestBody"]["content"]["application/json"]["examples"]
    assert spec["paths"]["/v1/console/session"]["post"]["security"] == []
