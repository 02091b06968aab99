"""Dashboard and search with millions of events and deliveries in the tables (3,000,000 of each
by default, so `make bench` stays under 12 minutes; EM_BENCH_REPORTING_ROWS=10000000 for the
full-size run), through the real api service, with the query plans that explain the times."""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import httpx

from services.devstack import wait_for_ready
from shared.ids import new_id
from shared.security import digest
from tests.bench.env import create_company, create_configuration, create_subscription

ROWS = int(os.environ.get("EM_BENCH_REPORTING_ROWS", "3000000"))
CHUNK = 1_000_000

SEED_EVENTS = """
INSERT INTO events (company_id, id, topic, event_type, subject, occurred_at, received_at, data, fanned_out)
SELECT $1, 'r-' || lpad(g::text, 9, '0'),
       CASE WHEN g % 10 = 0 THEN 'SCG-Contact' ELSE 'SCG-Message' END,
       CASE WHEN g % 10 = 0 THEN 'contact.created' ELSE 'message.delivered' END,
       '+1415' || lpad((g % 100000)::text, 7, '0'),
       now() - make_interval(secs => ($3::int - g) * 0.25), now() - make_interval(secs => ($3::int - g) * 0.25),
       jsonb_build_object('message_id', g), true
FROM generate_series($2::int, $3::int) g
"""

SEED_DELIVERIES = """
INSERT INTO deliveries (id, company_id, event_id, subscription_id, delivery_configuration_id, status,
                        attempt_count, succeeded_endpoints, created_at, updated_at, delivered_at)
SELECT 'dlv-r-' || lpad(g::text, 9, '0'), $1, 'r-' || lpad(g::text, 9, '0'), $4, $5,
       CASE WHEN g % 100 = 0 THEN 'failed' WHEN g % 50 = 1 THEN 'handled' ELSE 'delivered' END,
       1, '{}', now(), now(), now()
FROM generate_series($2::int, $3::int) g
"""


async def _timed(client: httpx.AsyncClient, path: str, params=None, repeat: int = 15) -> dict:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = await client.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return {"p50_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
            "rows": len(response.json().get("data", []))}


async def millions_of_rows(env) -> dict:
    pool = await env.pool()
    company = await create_company(pool)
    configuration = await create_configuration(pool, company, url=env.receiver_url("/r"))
    subscription = await create_subscription(pool, company, configuration)
    api_key = "emk_bench_" + new_id("k")
    await pool.execute("INSERT INTO applications (id, company_id, name, event_manager_enabled, api_key_digest, "
                       "created_at) VALUES ($1, $2, 'bench', true, $3, now())", new_id("app"), company, digest(api_key))
    seeding = time.perf_counter()
    for start in range(1, ROWS + 1, CHUNK):
        end = start + CHUNK - 1
        await pool.execute(SEED_EVENTS, company, start, end)
        await pool.execute(SEED_DELIVERIES, company, start, end, subscription, configuration)
        print(f"  seeded {end:,} rows ({time.perf_counter() - seeding:.0f}s)", flush=True)
    await pool.execute("VACUUM ANALYZE events")
    await pool.execute("VACUUM ANALYZE deliveries")
    seeded = time.perf_counter() - seeding

    env.stack.start_service("api")
    await asyncio.to_thread(wait_for_ready, env.stack.ports["api"], env.stack.services["api"])
    results: dict = {"events": ROWS, "deliveries": ROWS, "seed_seconds": round(seeded)}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{env.stack.ports['api']}", timeout=60,
                                 headers={"authorization": f"Bearer {api_key}"}) as client:
        results["dashboard"] = await _timed(client, "/v1/dashboard")
        board = (await client.get("/v1/dashboard")).json()["data"][0]["counts"]
        results["dashboard_counts"] = board
        first = (await client.get("/v1/events", params={"limit": 50})).json()
        middle = (await client.get("/v1/events", params={"id": f"r-{ROWS // 2:09d}"})).json()["data"][0]["received_at"]
        searches = {
            "newest_page": {"limit": 50},
            "next_page_by_cursor": {"limit": 50, "cursor": first["next_cursor"]},
            "topic": {"limit": 50, "topic": "SCG-Contact"},
            "status_failed": {"limit": 50, "status": "failed"},
            "configuration_and_status": {"limit": 50, "status": "failed",
                                         "delivery_configuration_id": configuration},
            "time_range": {"limit": 50, "to": middle},
            "subject": {"limit": 50, "subject": "+14150012345"},
            "by_id": {"id": "r-000000042"},
        }
        results["search"] = {name: await _timed(client, "/v1/events", params) for name, params in searches.items()}
    plan = await pool.fetch(
        "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM events e WHERE company_id = $1 AND EXISTS (SELECT 1 FROM "
        "deliveries d WHERE d.company_id = e.company_id AND d.event_id = e.id AND d.status = 'failed') "
        "ORDER BY received_at DESC, id DESC LIMIT 51", company)
    results["plan_status_failed"] = [row[0] for row in plan][:8]
    await pool.close()
    env.stack.services.pop("api").stop()
    return results
