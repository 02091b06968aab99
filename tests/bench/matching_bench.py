"""The matcher: its matching core in process (one core), and the service end to end (Kafka in,
PostgreSQL writes, Kafka out)."""

from __future__ import annotations

import asyncio
import gc
import random
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from services.matcher.index import Route, SubscriptionIndex
from services.matcher.matching import recipients_of
from shared.criteria import (
    MAX_OPERATORS,
    MAX_PATTERN_BYTES,
    MAX_STRING_BYTES,
    MAX_VALUES,
    MAX_WILDCARDS,
    compile_pattern,
)
from shared.messages import encode, event_message
from tests.bench.env import create_company, create_configuration, create_subscription, peak_rss_mb, wait_until

TOPICS = ["SCG-Keyword", "SCG-Sender ID", "SCG-Voice-Call", "SCG-Contact", "SCG-Message",
          "SCG-Communication-Assistant", "NIS-Events", "MSS-Messages", "ABA-Messages"]
COMPANIES = 1000
NUMBERS_PER_COMPANY = 1000
EVENTS = 30_000  # 100,000 before the end-to-end section joined make bench (the rate is per event)


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
    results["worst_accepted_pattern"] = worst_accepted_pattern()
    return results


def worst_accepted_pattern() -> dict[str, Any]:
    """The costliest pattern the limits accept, all on the one field an event fills, against a
    text message, a 100 kB string and a 100 kB array: microseconds per event through
    `recipients_of` (one subscription, so the figure is the pattern's cost)."""
    pattern = {"data": {"text": _costliest_values()}}
    compile_pattern(pattern)  # accepted, or the benchmark fails here
    sms = "Stop sending me offers, I never asked for them. Reply HELP for help. " * 2
    documents = {
        "text_message_160_chars": sms[:160],
        "string_100kb": "a" * 100_000,
        "array_1000_strings_of_100": ["a" * 100] * 1000,
    }
    index = SubscriptionIndex()
    index.replace_company_routes("cmp_worst", [_route(1, "cmp_worst", "SCG-Message", pattern)])
    now = datetime.now(UTC).isoformat()
    results: dict[str, Any] = {
        "values": sum(1 for _ in pattern["data"]["text"]),
        "operators": sum(1 for value in pattern["data"]["text"] if isinstance(value, dict)),
        "wildcard_stars": sum(value["wildcard"].count("*") for value in pattern["data"]["text"]
                              if isinstance(value, dict) and "wildcard" in value),
    }
    for label, text in documents.items():
        event = event_message("e", "SCG-Message", "message.received", "cmp_worst", None, now, now, {"text": text})
        seconds = _seconds_per_call(lambda event=event: recipients_of(index, event))
        results[f"{label}_us_per_event"] = round(seconds * 1e6, 1)
    return results


def _costliest_values() -> list:
    """Every operator fails on an `a...` value only after doing all its work: each wildcard has two
    `*` and a middle piece that is not there (a full scan per wildcard), each case-insensitive
    prefix folds the most characters a string may have; the values left are literals."""
    filler = 16  # bytes of each short string
    wildcards = [{"wildcard": "*" + "a" * k + "b*"} for k in range(1, MAX_WILDCARDS // 2 + 1)]
    spent = sum(len(op["wildcard"]) for op in wildcards) + len("data") + len("text")
    room = MAX_PATTERN_BYTES - spent - (MAX_VALUES - len(wildcards)) * filler
    long_prefixes = min(MAX_OPERATORS - len(wildcards), room // (MAX_STRING_BYTES - filler))
    short_operators = MAX_OPERATORS - len(wildcards) - long_prefixes
    long_prefix = "a" * (MAX_STRING_BYTES - 1) + "B"
    return [
        *wildcards,
        *({"prefix": {"equals-ignore-case": long_prefix}} for _ in range(long_prefixes)),
        *({"equals-ignore-case": f"{i:04d}" + "x" * (filler - 4)} for i in range(short_operators)),
        *(f"{i:04d}" + "y" * (filler - 4) for i in range(MAX_VALUES - MAX_OPERATORS)),
    ]


def _seconds_per_call(call: Callable[[], Any], budget_seconds: float = 1.0) -> float:
    """Best of five runs, each as many calls as fit in a fifth of the budget."""
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < budget_seconds / 50:
        call()
        calls += 1
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls * 10):
            call()
        best = min(best, (time.perf_counter() - started) / (calls * 10))
    return best


async def matcher_service(env, events: int = 20_000, companies: int = 100) -> dict:
    pool, producer = await env.pool(), await env.producer()
    company_ids = []
    for _ in range(companies):
        company = await create_company(pool)
        configuration = await create_configuration(pool, company, url=env.receiver_url("/matched"))
        await create_subscription(pool, company, configuration)
        company_ids.append(company)
    env.stack.start_service("matcher")
    from services.devstack import wait_for_ready

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
