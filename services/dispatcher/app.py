"""The dispatcher service: throttled, authenticated REST delivery with durable retries."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request

from services.dispatcher.auth import Credentials
from services.dispatcher.breaker import Breakers
from services.dispatcher.configs import ConfigurationCache
from services.dispatcher.health import Health
from services.dispatcher.poller import poll_forever
from services.dispatcher.recorder import Recorder
from services.dispatcher.sender import delivery_session
from services.dispatcher.worker import Dispatcher
from shared.gc_tuning import tune_for_throughput
from shared.kafka import ChangeFeed, Topics
from shared.netguard import EgressGuard
from shared.service import Runtime, create_service_app


async def follow_changes(feed: ChangeFeed, configurations: ConfigurationCache, credentials: Credentials) -> None:
    async for change in feed.changes():
        if change["kind"] == "delivery_configurations":
            credentials.forget_all(configurations.forget_company(change["company_id"]))


async def start(app: FastAPI, runtime: Runtime) -> None:
    settings = runtime.settings
    topics = Topics.of(settings)
    pool = await runtime.database_pool(size=6)
    app.state.change_feed = feed = await runtime.change_feed()
    configurations = ConfigurationCache(pool, settings.secret_key, settings.retry_jitter)
    guard = EgressGuard(settings.private_networks, settings.require_https)
    credentials = Credentials(configurations, guard, settings.request_timeout_seconds)
    http = delivery_session(guard)
    runtime.on_shutdown(http.close)
    producer = await runtime.kafka_producer()
    recorder = Recorder(pool)
    breakers = Breakers(settings.circuit_failure_threshold, settings.circuit_open_seconds)
    health = Health(pool, producer, topics.events, settings)
    dispatcher = Dispatcher(settings, configurations, credentials, recorder, http, breakers, health)
    dispatcher.consumer = await runtime.kafka_consumer("em-dispatcher", topics.deliveries,
                                                       listener=dispatcher.rebalance_listener())
    app.state.dispatcher = dispatcher
    runtime.run_forever("changes", follow_changes(feed, configurations, credentials))
    runtime.run_forever("endpoint-health", health.run(settings.health_check_seconds))
    runtime.run_forever("retry-poller", poll_forever(pool, producer, topics.deliveries, settings.retry_poll_seconds))
    # The recorder must outlive the dispatcher loop, which waits on it while draining.
    dispatcher_done = asyncio.Event()

    async def dispatch() -> None:
        try:
            await dispatcher.run(runtime.stopping)
        finally:
            dispatcher_done.set()

    runtime.run_forever("dispatcher", dispatch(), drains=True)
    runtime.run_forever("recorder", recorder.run(dispatcher_done), drains=True)
    tune_for_throughput()


app = create_service_app("dispatcher", start, version="1.0.0")


@app.get("/changes", tags=["operations"], summary="How far this replica has applied configuration changes")
async def changes_applied(request: Request) -> dict:
    """Per partition of the changes topic: `applied`, the offset below which every change
    notification has been applied (cached configurations dropped), and `end`, the topic's end
    as this replica last saw it."""
    return request.app.state.change_feed.progress()
