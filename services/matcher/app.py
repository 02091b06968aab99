"""The matcher service: consumes events, persists them, applies subscriptions, emits deliveries."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from functools import partial

from fastapi import FastAPI, Request

from services.matcher import loader
from services.matcher.index import SubscriptionIndex
from services.matcher.worker import Matcher
from shared.deadletter import retry_while_unavailable
from shared.gc_tuning import tune_for_throughput
from shared.kafka import ChangeFeed, Topics
from shared.service import Runtime, create_service_app

log = logging.getLogger(__name__)

# Transactions that committed just after a pass began carry an earlier updated_at.
RECONCILE_OVERLAP = timedelta(seconds=30)


async def follow_changes(feed: ChangeFeed, pool, index: SubscriptionIndex) -> None:
    async for change in feed.changes():
        reload = loader.load_company_numbers if change["kind"] == "monitored_numbers" else loader.load_company_routes
        try:
            await retry_while_unavailable("matcher", partial(reload, pool, index, change["company_id"]))
        except Exception:  # a notification no company can match (only a hand-made one): skip it
            log.exception("could not apply change notification %r", change)


async def reconcile(pool, index: SubscriptionIndex, every: float) -> None:
    """Safety net for a change whose notification was lost (an api crash between commit and
    announce): now and then, reload the companies whose subscriptions or configurations changed.
    Only those: recompiling 100,000 subscriptions would stall matching for seconds."""
    since = await pool.fetchval("SELECT now()")

    async def reload_changed() -> None:
        nonlocal since
        now = await pool.fetchval("SELECT now()")
        for company_id in await loader.companies_changed_since(pool, since - RECONCILE_OVERLAP):
            await loader.load_company_routes(pool, index, company_id)
        since = now

    while True:
        await asyncio.sleep(every)
        await retry_while_unavailable("matcher", reload_changed)


async def start(app: FastAPI, runtime: Runtime) -> None:
    settings = runtime.settings
    topics = Topics.of(settings)
    pool = await runtime.database_pool(size=4)
    # Before the full load, so no change slips between the two.
    app.state.change_feed = feed = await runtime.change_feed()
    app.state.index = index = SubscriptionIndex()
    await loader.load_all_routes(pool, index)
    await loader.load_all_numbers(pool, index)
    producer = await runtime.kafka_producer()
    consumer = await runtime.kafka_consumer("em-matcher", topics.events)
    runtime.run_forever("changes", follow_changes(feed, pool, index))
    runtime.run_forever("reconcile", reconcile(pool, index, settings.config_reconcile_seconds))
    runtime.run_forever("matcher", Matcher(index, pool, consumer, producer, topics).run(runtime.stopping), drains=True)
    tune_for_throughput()


app = create_service_app("matcher", start, version="1.0.0")


@app.get("/changes", tags=["operations"], summary="How far this replica has applied configuration changes")
async def changes_applied(request: Request) -> dict:
    """Per partition of the changes topic: `applied`, the offset below which every change
    notification has been applied (routes and monitored numbers reloaded), and `end`, the
    topic's end as this replica last saw it."""
    return request.app.state.change_feed.progress()
