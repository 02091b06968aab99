"""The matcher: its matching core in process (one core), and the service end to end (Kafka in,
PostgreSQL writes, Kafka out)."""

from __future__ import annotations

import asyncio
import gc
import random
import time
import tracemalloc
from datetime import UTC, datetime

from services.matcher.index import Route, SubscriptionIndex
from services.matcher.matching import recipients_of
from shared.criteria import compile_pattern
from shared.messages import encode, event_message
from tests.bench.env import create_company, create_configuration, create_subscription, peak_rss_mb, wait_until

TOPICS = ["SCG-Keyword", "SCG-Sender ID", "SCG-Voice-Call", "SCG-Contact", "SCG-Message",
          "SCG-Communication-Assistant", "NIS-Events", "MSS-Messages", "ABA-Messages"]
COMPANIES = 1000
NUMBERS_PER_COMPANY = 1000
EVENTS = 100_000


def _route(n: int, company: str, topic: str, criteria: dict | None, event_types=None) -> Route:
    return Route(f"sub_{n}", company, topic, f"dc_{company}", True, event_types, 0.0, None,
                 compile_pattern(criteria) if criteria else None)


def _index(subscriptions_per_company: int, candidates_per_company: int) -> SubscriptionIndex:
    """`candidates_per_company` routes on SCG-Message and NIS-Events (the topics the events use);
    the rest on the other topics, where no benchmark event can reach them."""
    index, n = SubscriptionIndex(), 0
    others = [t for t in TOPICS if t not in ("SCG-Message", "NIS-Events")]
    for c in range(COMPANIES):
        company, routes = f"cmp_{c}", []
        for i in range(subscriptions_per_company):
            n += 1
            if i < candidates_per_company:
                topic = "SCG-Message" if i % 2 == 0 else "NIS-Events"
                criteria = {"data": {"keyword": [{"prefix": "ST"}]}} if i % 4 == 0 else None
                event_types = frozenset({"message.received"}) if i % 3 == 0 else None
                routes.append(_route(n, company, topic, criteria, event_types))
            else:
                routes.append(_route(n, company, others[i % len(others)], {"data": {"x": ["y"]}}))
        index.replace_company_routes(company, routes)
    return index


def _numbers(index: SubscriptionIndex) -> None:
    for c in range(COMPANIES):
        index.replace_company_numbers(f"cmp_{c}", (f"+1{c:04d}{i:06d}" for i in range(NUMBERS_PER_COMPANY)))


def _events(count: int) -> list[dict]:
    rng = random.Random(7)
    now = datetime.now(UTC).isoformat()
    events = []
    for i in range(count):
        c = rng.randrange(COMPANIES)
        if i % 2:
            events.append(event_message(f"e{i}", "NIS-Events", "number.ported", None,
                                        f"+1{c:04d}{rng.randrange(NUMBERS_PER_COMPANY):06d}", now, now, {}))
        else:
            events.append(event_message(f"e{i}", "SCG-Message", rng.choice(["message.received", "message.sent"]),
                                        f"cmp_{c}", None, now, now, {"keyword": rng.choice(["STOP", "HELP"])}))
    return events


def _rate(index: SubscriptionIndex, events: list[dict]) -> tuple[float, int]:
    """Best of three passes, with the collector quiet: we time matching, not garbage collection."""
    gc.collect()
    gc.freeze()
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        matched = sum(len(r.routes) for event in events for r in recipients_of(index, event))
        best = max(best, len(events) / (time.perf_counter() - started))
    gc.unfreeze()
    return best, matched


def matching_core() -> dict:
    tracemalloc.start()
    numbers_only = SubscriptionIndex()
    before = tracemalloc.get_traced_memory()[0]
    _numbers(numbers_only)
    numbers_mb = (tracemalloc.get_traced_memory()[0] - before) / 2**20
    tracemalloc.stop()

    events = _events(EVENTS)
    results = {"monitored_numbers": len(numbers_only.numbers), "numbers_memory_mb": round(numbers_mb, 1)}
    for label, per_company, candidates in (("1k_subscriptions", 1, 1), ("100k_subscriptions_same_1k_reachable",
                                                                           100, 1),
                                           ("100k_subscriptions_10_reachable_per_company", 100, 10)):
        index = _index(per_company, candidates)
        index.numbers = numbers_only.numbers
        rate, matched = _rate(index, events)
        results[label] = {"events_per_second": round(rate), "deliveries_matched": matched}
    return results


async def matcher_service(env, events: int = 20_000, companies: int = 100) -> dict:
    pool, producer = await env.pool(), await env.producer()
    company_ids = []
    for _ in range(companies):
        company = await create_company(pool)
        configuration = await create_configuration(pool, company, url=env.receiver_url("/matched"))
        await create_subscription(pool, company, configuration)
        company_ids.append(company)
    env.stack.start_service("matcher")
    from shared.devstack import wait_for_ready

    await asyncio.to_thread(wait_for_ready, env.stack.ports["matcher"], env.stack.services["matcher"])
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    started = time.perf_counter()
    futures = []
    for i in range(events):
        company = company_ids[i % companies]
        message = event_message(f"bench-{i}", "SCG-Message", "message.sent", company, None, now, now,
                                {"text": "x" * 200})
        futures.append(await producer.send(env.topics.events, encode(message), key=company.encode()))
    await asyncio.gather(*futures)
    produced = time.perf_counter() - started

    async def done():
        count = await pool.fetchval("SELECT count(*) FROM events WHERE fanned_out AND id LIKE 'bench-%'")
        return count >= events

    await wait_until(done, timeout=300, interval=0.1)
    seconds = time.perf_counter() - started
    deliveries = await pool.fetchval("SELECT count(*) FROM deliveries WHERE event_id LIKE 'bench-%'")
    rss = peak_rss_mb(env.stack.services["matcher"].process)
    await producer.stop()
    await pool.close()
    env.stack.services.pop("matcher").stop()
    return {"events": events, "seconds": round(seconds, 2), "events_per_second": round(events / seconds),
            "deliveries_written_and_published": deliveries, "produce_seconds": round(produced, 2),
            "matcher_peak_rss_mb": rss}
