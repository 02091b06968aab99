"""The scheduler service: at each fire time of a scheduled configuration, writes the window's
events into one JSON file in media storage and announces it on MSS-Messages; also runs the
retention purge."""

from __future__ import annotations

from fastapi import FastAPI

from services.scheduler.retention import purge_forever
from services.scheduler.windows import WindowRunner, tick_forever
from shared.db import create_pool
from shared.kafka import Topics, kafka_ready, make_producer
from shared.media import MediaStore
from shared.service import Runtime, create_service_app
from shared.settings import get_settings


async def start(app: FastAPI, runtime: Runtime) -> None:
    settings = get_settings()
    settings.require_runtime()
    pool = await create_pool(settings.database_url, size=3)
    runtime.on_shutdown(pool.close)
    producer = make_producer(settings)
    await producer.start()
    runtime.on_shutdown(producer.stop)
    runtime.checks["database"] = lambda: pool.execute("SELECT 1")
    runtime.checks["kafka"] = lambda: kafka_ready(producer)
    runner = WindowRunner(pool, MediaStore(settings), producer, Topics.of(settings), settings.api_base_url)
    app.state.runner = runner
    runtime.run_forever("windows", tick_forever(runner, settings.scheduler_tick_seconds))
    runtime.run_forever("retention", purge_forever(pool, settings.retention_days, settings.retention_interval_seconds))


app = create_service_app("scheduler", start, version="1.0.0")
