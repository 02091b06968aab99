"""The api service: configuration and reporting REST API (OpenAPI at /docs)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.api import bulk
from services.api.changes import relay_changes
from services.api.console import mount_console
from services.api.deps import document_scopes
from services.api.routes import (
    admin,
    api_keys,
    audit_log,
    buffer_files,
    bulk_actions,
    console_sessions,
    dashboard,
    dead_letters,
    delivery_configurations,
    events,
    monitored_numbers,
    rate_limits,
    replay,
    schedules,
    signing,
    sources,
    subscriptions,
    testing,
    topics,
)
from shared import ratelimit
from shared.media import MediaStore
from shared.service import Runtime, create_service_app


async def start(app: FastAPI, runtime: Runtime) -> None:
    app.state.db = db = runtime.database(size=10)
    await ratelimit.start(app.state, runtime)
    app.state.producer = producer = await runtime.kafka_producer()
    app.state.outbox_wake = wake = asyncio.Event()
    runtime.run_forever("change-relay", relay_changes(db, producer, runtime.settings, wake))
    app.state.media = MediaStore(runtime.settings)

    def start_bulk_job(job_id: str) -> None:
        runtime.spawn(f"bulk-{job_id}", bulk.run_job(db, job_id))

    app.state.start_bulk_job = start_bulk_job
    await bulk.resume_jobs(db, start_bulk_job)


app = create_service_app(
    "api",
    start,
    description="Configure event delivery (delivery configurations, subscriptions, monitored numbers) and "
    "see what happened to every event. Company calls use `Authorization: Bearer <api_key>`; operator calls "
    "under `/v1/admin` use the operator token.\n\n"
    "**Scopes.** Every company operation names the scope it requires (`x-required-scope`, and the bearer "
    "requirement's role): `read` (look only), `write` (change configurations; includes `read`), `bulk` "
    "(republish, bulk actions, replays; includes nothing else). A key lacking it gets 403 naming the scope. "
    "An application's own key and a console link hold every scope; company keys (`/v1/api-keys`) hold those "
    "they were given.",
    version="1.0.0",
)
for module in (admin, sources, api_keys, topics, delivery_configurations,
               subscriptions, replay, monitored_numbers, events, dashboard,
               bulk_actions, buffer_files, dead_letters, schedules, console_sessions, signing, testing, audit_log,
               rate_limits):
    app.include_router(module.router)
mount_console(app)  # the web console at /console, a client of the API above

_openapi_with_problems = app.openapi


def _openapi_with_scopes() -> dict:
    if app.openapi_schema is None:
        app.openapi_schema = ratelimit.document_limits(document_scopes(_openapi_with_problems(), app.routes))
    return app.openapi_schema


app.openapi = _openapi_with_scopes
