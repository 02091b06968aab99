"""The scheduler service: at each fire time of a scheduled configuration, writes the window's
events into one JSON file in media storage and announces it on MSS-Messages; also runs the
retention purge."""

from __future__ import annotations

from fastapi import FastAPI

from services.scheduler.retention import purge_forever
from services.scheduler.windows import WindowRunner, tick_forever
from shared.kafka import Topics
from shared.media import MediaStore
from shared.service import Runtime, create_service_app


async def start(app: FastAPI, runtime: Runtime) -> None:
    settings = runtime.settings
    pool = await runtime.database_pool(size=3)
    producer = await runtime.kafka_producer()
    runner = WindowRunner(pool, MediaStore(settings), producer, Topics.of(settings), settings.api_base_url)
    app.state.runner = runner
    # Plain loops, not APScheduler jobs: a loop never overlaps itself and runs a late tick once
    # (max_instances=1 and coalesce by construction), and the Runtime cancels it before the pool
    # and producer close, which AsyncIOScheduler.shutdown cannot wait for.
    runtime.run_forever("windows", tick_forever(runner, settings.scheduler_tick_seconds))
    runtime.run_forever("retention", purge_forever(pool, settings.retention_days, settings.retention_interval_seconds))


app = create_service_app("scheduler", start, version="1.0.0")
