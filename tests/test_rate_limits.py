"""Rate limits (issue 16, shared/ratelimit.py): a company's limit per API key holds across two api
replicas (one shared bucket), refusals are 429 problem+json with Retry-After, another company is
unaffected, a source token is limited at ingest, and failed authentication is limited per client
address before the credential lookup (a valid key from that address is refused too, other
addresses are not).

Each address test sends from its own loopback address (127.0.0.x): the budget it spends is that
address's, never the 127.0.0.1 every other test uses."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from shared.db import create_pool
from shared.ratelimit import RateLimiter
from tests.conftest import ALL_TOPICS
from tests.test_console_sessions import Browser
from tests.test_edges import another_replica

MINUTE = 60


def refused_properly(response: httpx.Response) -> bool:
    body = response.json()
    retry_after = int(response.headers["retry-after"])
    return (response.headers["content-type"].startswith("application/problem+json") and body["status"] == 429
            and 1 <= retry_after <= MINUTE)


def from_address(base_url: str, address: str, authorization: str | None = None) -> httpx.AsyncClient:
    headers = {"authorization": authorization} if authorization else {}
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


async def test_a_company_limit_holds_across_two_api_replicas(stack, urls, admin, tenant, other_tenant):
    replica, port = await another_replica(stack, "api")
    try:
        limited = await admin.patch(f"/v1/admin/companies/{tenant.id}", json={"rate_limit_per_minute": 2})
        assert limited.status_code == 200 and limited.json()["effective_rate_limit_per_minute"] == 2, limited.text
        second = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                   headers={"authorization": f"Bearer {tenant.api_key}"})
        async with second:
            started = time.monotonic()
            answers = [await client.get("/v1/delivery-configurations")
                       for client in (tenant.client, second, tenant.client, second)]
            elapsed = time.monotonic() - started
            statuses = [a.status_code for a in answers]
            # Two per minute: a token comes back every 30 s, so a slow machine may see one more.
            assert statuses[:2] == [200, 200], statuses
            assert statuses[2:].count(200) <= int(elapsed // (MINUTE / 2)), (statuses, elapsed)
            if elapsed < MINUTE / 2:
                assert statuses[2:] == [429, 429], statuses  # each replica refuses what the other used
            assert all(refused_properly(a) for a in answers if a.status_code == 429)
            # Another company's keys are not limited by it, on either replica.
            for base in (urls.api, f"http://127.0.0.1:{port}"):
                other = await other_tenant.client.get(f"{base}/v1/delivery-configurations")
                assert other.status_code == 200, other.text
            # Back to the default (a key refused now waits out its Retry-After, as it was told).
            assert (await admin.patch(f"/v1/admin/companies/{tenant.id}",
                                      json={"rate_limit_per_minute": None})).status_code == 200
    finally:
        await asyncio.to_thread(replica.stop)
    changed = (await admin.get("/v1/admin/audit-log", params={"company_id": tenant.id,
                                                              "action": "company.rate_limit"})).json()["data"]
    assert [r["after"] for r in changed] == [{"rate_limit_per_minute": None}, {"rate_limit_per_minute": 2}]


async def test_a_console_session_is_limited_like_a_key(urls, admin, tenant):
    browser = Browser(urls.api)
    try:
        assert (await browser.sign_in(tenant.api_key)).status_code == 200
        limited = await admin.patch(f"/v1/admin/companies/{tenant.id}", json={"rate_limit_per_minute": 1})
        assert limited.status_code == 200
        statuses = [(await browser.request("GET", "/v1/delivery-configurations", csrf=False)).status_code
                    for _ in range(2)]
        assert statuses == [200, 429], statuses
    finally:
        await browser.aclose()


async def test_a_console_session_shares_its_keys_bucket(urls, admin, tenant):
    """Signing in to the console with a key does not double the key's limit."""
    browser = Browser(urls.api)
    try:
        assert (await browser.sign_in(tenant.api_key)).status_code == 200
        limited = await admin.patch(f"/v1/admin/companies/{tenant.id}", json={"rate_limit_per_minute": 2})
        assert limited.status_code == 200
        assert (await tenant.client.get("/v1/delivery-configurations")).status_code == 200
        statuses = [(await browser.request("GET", "/v1/delivery-configurations", csrf=False)).status_code
                    for _ in range(2)]
        assert statuses[0] == 200 and statuses[1] == 429, statuses  # (a token comes back each 30 s)
    finally:
        await browser.aclose()


async def test_a_remembered_refusal_names_the_companys_limit(admin, tenant):
    assert (await admin.patch(f"/v1/admin/companies/{tenant.id}", json={"rate_limit_per_minute": 1})).status_code == 200
    answers = [await tenant.client.get("/v1/delivery-configurations") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 429, 429]
    # The second refusal comes from this process's memory of the first, without the database.
    assert all("rate limit of 1 requests per minute" in a.json()["detail"] for a in answers[1:]), answers[2].text


async def test_the_openapi_documents_the_429(urls):
    async with httpx.AsyncClient(timeout=30) as client:
        api = (await client.get(f"{urls.api}/openapi.json")).json()
        ingest = (await client.get(f"{urls.ingest}/openapi.json")).json()
    for operation in (api["paths"]["/v1/delivery-configurations"]["get"], ingest["paths"]["/v1/events"]["post"]):
        assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert "429" not in api["paths"]["/v1/admin/companies"]["get"]["responses"]  # the operator is not limited


async def test_an_invalid_company_limit_is_a_422_naming_the_field(admin, tenant):
    response = await admin.patch(f"/v1/admin/companies/{tenant.id}", json={"rate_limit_per_minute": 0})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"][-1] == "rate_limit_per_minute"
    assert (await admin.patch("/v1/admin/companies/cmp_none", json={"rate_limit_per_minute": 5})).status_code == 404
    assert (await tenant.client.patch(f"/v1/admin/companies/{tenant.id}",
                                      json={"rate_limit_per_minute": 5})).status_code == 401


async def test_failed_authentication_is_limited_per_address_before_the_lookup(stack, urls, tenant):
    replica, port = await another_replica(stack, "api", auth_failure_limit_per_minute="3")
    base = f"http://127.0.0.1:{port}"
    try:
        async with from_address(base, "127.0.0.2", "Bearer emk_garbage") as garbage, \
                from_address(base, "127.0.0.2", f"Bearer {tenant.api_key}") as valid_there:
            statuses = [(await garbage.get("/v1/delivery-configurations")).status_code for _ in range(4)]
            assert statuses == [401, 401, 401, 429], statuses
            refused = await garbage.get("/v1/delivery-configurations")
            assert refused.status_code == 429 and refused_properly(refused)
            # Checked before the key is looked up: even a valid key from that address waits.
            assert (await valid_there.get("/v1/delivery-configurations")).status_code == 429
        # Other addresses are not affected.
        async with from_address(base, "127.0.0.1", f"Bearer {tenant.api_key}") as valid_here:
            assert (await valid_here.get("/v1/delivery-configurations")).status_code == 200
        # A request without credentials costs no lookup and no budget.
        async with from_address(base, "127.0.0.4") as anonymous:
            assert [(await anonymous.get("/v1/delivery-configurations")).status_code
                    for _ in range(5)] == [401] * 5
    finally:
        await asyncio.to_thread(replica.stop)


async def test_ingest_limits_each_source_token_and_failed_tokens_per_address(stack, admin, tenant):
    created = await admin.post("/v1/admin/sources", json={"name": f"limited-{uuid.uuid4().hex[:6]}",
                                                          "topics": ALL_TOPICS})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    replica, port = await another_replica(stack, "ingest", ingest_rate_limit_per_minute="2",
                                          auth_failure_limit_per_minute="2")
    base = f"http://127.0.0.1:{port}"
    event = {"topic": "SCG-Message", "event_type": "message.sent", "company_id": tenant.id, "data": {}}
    try:
        async with from_address(base, "127.0.0.1", f"Bearer {token}") as source:
            statuses = [(await source.post("/v1/events", json=event)).status_code for _ in range(3)]
            assert statuses[:2] == [202, 202] and statuses[2] in (429, 202), statuses
            if statuses[2] == 429:
                assert refused_properly(await source.post("/v1/events", json=event))
        async with from_address(base, "127.0.0.3", "Bearer ems_garbage") as garbage, \
                from_address(base, "127.0.0.3", f"Bearer {token}") as valid_there:
            statuses = [(await garbage.post("/v1/events", json=event)).status_code for _ in range(3)]
            assert statuses == [401, 401, 429], statuses
            assert (await valid_there.post("/v1/events", json=event)).status_code == 429
    finally:
        await asyncio.to_thread(replica.stop)


async def test_a_key_in_use_is_not_refused_by_garbage_from_its_address(stack, tenant, other_tenant):
    """Behind a NAT, or an ingress, garbage keys spend the address's budget; a key this replica
    recently verified keeps working (still looked up), a key it has not verified waits."""
    replica, port = await another_replica(stack, "api", auth_failure_limit_per_minute="2")
    base = f"http://127.0.0.1:{port}"
    try:
        async with from_address(base, "127.0.0.6", f"Bearer {tenant.api_key}") as in_use, \
                from_address(base, "127.0.0.6", f"Bearer {other_tenant.api_key}") as not_yet, \
                from_address(base, "127.0.0.6", "Bearer emak_garbage") as garbage:
            assert (await in_use.get("/v1/delivery-configurations")).status_code == 200
            statuses = [(await garbage.get("/v1/delivery-configurations")).status_code for _ in range(3)]
            assert statuses == [401, 401, 429], statuses
            assert (await in_use.get("/v1/delivery-configurations")).status_code == 200
            assert (await not_yet.get("/v1/delivery-configurations")).status_code == 429
    finally:
        await asyncio.to_thread(replica.stop)


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(stack):
    """EM_FORWARDED_ALLOW_IPS names the ingress: its X-Forwarded-For is the client's address, and
    IPv6 clients of one /64 share one budget."""
    replica, port = await another_replica(stack, "api", auth_failure_limit_per_minute="2",
                                          forwarded_allow_ips="127.0.0.7")
    base = f"http://127.0.0.1:{port}"

    async def statuses(client_address: str, count: int) -> list[int]:
        async with from_address(base, "127.0.0.7", "Bearer emak_garbage") as ingress:
            return [(await ingress.get("/v1/delivery-configurations",
                                       headers={"x-forwarded-for": client_address})).status_code
                    for _ in range(count)]

    try:
        assert await statuses("198.51.100.7", 3) == [401, 401, 429]
        assert await statuses("198.51.100.8", 1) == [401]  # another client behind the same ingress
        assert await statuses("2001:db8:1:2::1", 2) == [401, 401]
        assert await statuses("2001:db8:1:2::ffff", 1) == [429]  # the same /64
        assert await statuses("2001:db8:1:3::1", 1) == [401]
    finally:
        await asyncio.to_thread(replica.stop)


async def test_console_sign_in_and_made_up_cookies_spend_the_address_budget(stack, tenant):
    replica, port = await another_replica(stack, "api", auth_failure_limit_per_minute="2")
    base = f"http://127.0.0.1:{port}"
    try:
        async with from_address(base, "127.0.0.8") as signing_in:
            statuses = [(await signing_in.post("/v1/console/session", json={"credential": "emak_garbage"})).status_code
                        for _ in range(3)]
            assert statuses == [401, 401, 429], statuses
            refused = await signing_in.post("/v1/console/session", json={"credential": "emak_garbage"})
            assert refused_properly(refused)
        async with from_address(base, "127.0.0.9") as cookies:
            statuses = [(await cookies.get("/v1/delivery-configurations",
                                           headers={"cookie": f"em_console=made-up-{n}"})).status_code
                        for n in range(3)]
            assert statuses == [401, 401, 429], statuses
        # The right key still signs in from elsewhere, and names the field when wrong.
        async with from_address(base, "127.0.0.1") as elsewhere:
            assert (await elsewhere.post("/v1/console/session", json={"credential": tenant.api_key})).status_code == 200
            wrong = await elsewhere.post("/v1/console/session", json={"credential": "emak_wrong"})
            assert wrong.status_code == 401 and wrong.json()["errors"][0]["loc"][-1] == "credential", wrong.text
    finally:
        await asyncio.to_thread(replica.stop)


async def test_api_and_ingest_check_the_rate_limit_pool_when_ready(urls):
    """The limiter's pool is made at start through the service's Runtime: /readyz checks it (and
    shutdown closes it)."""
    async with httpx.AsyncClient(timeout=30) as client:
        for base in (urls.api, urls.ingest):
            ready = (await client.get(f"{base}/readyz")).json()
            assert ready["status"] == "ready" and "rate_limits" in ready["checked"], ready


async def test_a_disabled_application_key_or_source_token_spends_the_address_budget(stack, admin, tenant):
    """Refused with 403, but looked up each time: it costs the budget an unknown credential does."""
    assert (await admin.patch(f"/v1/admin/applications/{tenant.application_id}",
                              json={"event_manager_enabled": False})).status_code == 200
    created = await admin.post("/v1/admin/sources", json={"name": f"off-{uuid.uuid4().hex[:6]}", "topics": ALL_TOPICS})
    assert created.status_code == 201, created.text
    assert (await admin.patch(f"/v1/admin/sources/{created.json()['id']}", json={"enabled": False})).status_code == 200
    api, api_port = await another_replica(stack, "api", auth_failure_limit_per_minute="2")
    ingest, ingest_port = await another_replica(stack, "ingest", auth_failure_limit_per_minute="2")
    try:
        async with from_address(f"http://127.0.0.1:{api_port}", "127.0.0.10", f"Bearer {tenant.api_key}") as key:
            statuses = [(await key.get("/v1/delivery-configurations")).status_code for _ in range(3)]
            assert statuses == [403, 403, 429], statuses
        async with from_address(f"http://127.0.0.1:{ingest_port}", "127.0.0.11",
                                f"Bearer {created.json()['token']}") as token:
            event = {"topic": "SCG-Message", "event_type": "message.sent", "company_id": tenant.id, "data": {}}
            statuses = [(await token.post("/v1/events", json=event)).status_code for _ in range(3)]
            assert statuses == [403, 403, 429], statuses
    finally:
        await asyncio.to_thread(api.stop)
        await asyncio.to_thread(ingest.stop)


class CountingPool:
    """A real pool that counts the takes that reached the database."""

    def __init__(self, pool):
        self.pool, self.calls = pool, 0

    async def fetchrow(self, *args):
        self.calls += 1
        return await self.pool.fetchrow(*args)


async def test_leased_tokens_keep_the_limit_exact_across_replicas_with_few_round_trips(stack):
    """Two replicas' limiters on one bucket of 2,000 per 10 s (200 a second, so leases of 20):
    together they allow the bucket's tokens and what it refilled meanwhile, never more, while
    most takes spend a lease without a round trip; a small limit (60 a minute) leases nothing."""
    pool = await create_pool(stack.env["EM_DATABASE_URL"], size=4)
    try:
        replicas = [CountingPool(pool), CountingPool(pool)]
        limiters = [RateLimiter(replica, window_seconds=10) for replica in replicas]
        subject = f"test:{uuid.uuid4().hex}"
        started = time.monotonic()

        async def spend(limiter: RateLimiter) -> int:
            allowed = 0
            while (await limiter.take(subject, 2000)).allowed:
                allowed += 1
            return allowed

        allowed = sum(await asyncio.gather(*(spend(limiter) for limiter in limiters)))
        refilled = (time.monotonic() - started) * 200
        # Each replica may end holding less than one lease that the other could have used.
        assert 2000 - 2 * 20 <= allowed <= 2000 + refilled, (allowed, refilled)
        round_trips = sum(replica.calls for replica in replicas)
        assert round_trips <= allowed / 10, (round_trips, allowed)

        small = RateLimiter(replicas[0], window_seconds=60)
        small_subject, before = f"test:{uuid.uuid4().hex}", replicas[0].calls
        assert all([(await small.take(small_subject, 60)).allowed for _ in range(5)])
        assert replicas[0].calls - before == 5  # one round trip each: a lease of one
    finally:
        await pool.close()


async def test_concurrent_requests_share_one_lease_instead_of_each_taking_one(stack):
    """64 requests at once on a fresh bucket of 600 per 6 s (leases of 10): one take at a time, so
    the bucket gives out what they spend plus at most one lease, and never refuses them."""
    pool = await create_pool(stack.env["EM_DATABASE_URL"], size=8)
    try:
        limiter, subject = RateLimiter(pool, window_seconds=6), f"test:{uuid.uuid4().hex}"
        verdicts = await asyncio.gather(*(limiter.take(subject, 600) for _ in range(64)))
        assert all(verdict.allowed for verdict in verdicts)
        left = await pool.fetchval("SELECT tokens FROM rate_limit_buckets WHERE subject = $1", subject)
        assert left >= 600 - 64 - 10, left  # each taking its own lease would have emptied the bucket
    finally:
        await pool.close()


def test_what_a_limiter_remembers_is_bounded_keeping_the_live_and_newest(monkeypatch):
    """Refusals and leases are remembered per subject, and subjects are unbounded (addresses,
    tokens): once full, lapsed entries go first, then the oldest."""
    from shared import ratelimit as module

    monkeypatch.setattr(module, "REMEMBERED", 3)
    limiter = module.RateLimiter(pool=None, window_seconds=60)
    limiter._remember("a", 60, 10)
    limiter._remember("lapsed", -1, 10)
    limiter._remember("b", 60, 10)
    limiter._remember("c", 60, 10)  # full: the lapsed refusal makes room, not the older "a"
    assert list(limiter._refused_until) == ["a", "b", "c"]
    limiter._remember("d", 60, 10)  # full of live ones: the oldest goes
    assert list(limiter._refused_until) == ["b", "c", "d"]
    for subject in ("w", "x", "y", "z"):
        limiter._lease(subject, 5, 10)
    assert list(limiter._leases) == ["x", "y", "z"]
    limiter._leases["y"].left = 0  # spent: not live any more, so it goes before the older "x"
    limiter._lease("next", 5, 10)
    assert list(limiter._leases) == ["x", "z", "next"]
