"""The frame every service shares: a FastAPI app with `/healthz`, `/readyz`, `/metrics`,
problem+json errors, and a lifespan that starts the service's resources and worker loops and
drains them on shutdown.

`/metrics` on the public services (api, ingest) answers only a bearer token: the operator's
(`EM_ADMIN_TOKEN`) or the scrape-only `EM_METRICS_TOKEN`. Their ports face the internet and
their series name tenants' topics and event types. The workers' ports are not public (the
NetworkPolicies in deploy/k8s admit only the namespace and Prometheus), so theirs stays open."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute, _effective_route_context_var  # how APIRoute reads an inclusion
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.staticfiles import StaticFiles

from shared import tracing
from shared.db import Database, create_pool
from shared.errors import PROBLEM, Unauthorized, document_problems, install_problem_handlers
from shared.kafka import ChangeFeed, kafka_ready, make_consumer, make_producer, report_lag
from shared.security import same_secret
from shared.settings import Settings, get_settings
from shared.validation import BodyGuard, check_parameters

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]

# Swagger UI's files, vendored from npm (swagger-ui-dist, see swagger_ui/README), so /docs renders
# where there is no internet access.
SWAGGER_UI = Path(__file__).parent / "swagger_ui"

# The services whose port is exposed outside the cluster; their /metrics needs a token.
PUBLIC_SERVICES = frozenset({"api", "ingest"})


class Runtime:
    """What a service registers while starting: readiness checks, background loops, and
    cleanups run in reverse order on shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.checks: dict[str, ReadinessCheck] = {}
        self.tasks: list[asyncio.Task] = []
        self.draining: list[asyncio.Task] = []
        self.jobs: set[asyncio.Task] = set()
        self.cleanups: list[Callable[[], Awaitable[None]]] = []
        # Loops that hold work in flight watch this and return once they have finished it.
        self.stopping = asyncio.Event()

    def run_forever(self, name: str, coroutine: Awaitable[None], drains: bool = False) -> None:
        """Run a loop for the life of the service. A loop that `drains` is given time to finish
        its in-flight work after `stopping` is set; the others are cancelled at once."""
        task = asyncio.create_task(coroutine, name=name)
        task.add_done_callback(_exit_if_crashed)
        (self.draining if drains else self.tasks).append(task)

    def spawn(self, name: str, coroutine: Awaitable[None]) -> None:
        """Run a finite job (a bulk action, say) in the background. Unlike a loop, a job that
        fails is logged and forgotten: one company's job must not take the process down. Jobs
        still running at shutdown are cancelled; they are resumable by design."""
        task = asyncio.create_task(coroutine, name=name)
        self.jobs.add(task)
        task.add_done_callback(_log_if_failed)
        task.add_done_callback(self.jobs.discard)

    def on_shutdown(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        self.cleanups.append(cleanup)

    async def kafka_producer(self) -> AIOKafkaProducer:
        """A started producer, stopped on shutdown, whose broker connection `/readyz` checks."""
        producer = make_producer(self.settings)
        await producer.start()
        self.on_shutdown(producer.stop)
        self.checks["kafka"] = lambda: kafka_ready(producer)
        return producer

    async def kafka_consumer(self, group_id: str, topic: str, listener=None) -> AIOKafkaConsumer:
        """A started consumer-group member (manual commits), stopped on shutdown."""
        consumer = make_consumer(self.settings, group_id)
        consumer.subscribe([topic], listener=listener)
        await consumer.start()
        self.on_shutdown(consumer.stop)
        self.run_forever(f"lag-{group_id}", report_lag(consumer, group_id))
        return consumer

    async def change_feed(self) -> ChangeFeed:
        feed = ChangeFeed(self.settings)
        await feed.start()
        self.on_shutdown(feed.stop)
        return feed

    async def database_pool(self, size: int, check: str = "database") -> asyncpg.Pool:
        """A raw asyncpg pool, closed on shutdown, checked by `/readyz` (as `check`)."""
        pool = await create_pool(self.settings.database_url, size=size)
        self.on_shutdown(pool.close)
        self.checks[check] = lambda: pool.execute("SELECT 1")
        return pool

    def database(self, size: int) -> Database:
        """The SQLAlchemy engine (api and ingest), disposed on shutdown, checked by `/readyz`."""
        db = Database(self.settings.database_url, pool_size=size)
        self.on_shutdown(db.close)
        self.checks["database"] = db.ping
        return db

    async def shutdown(self) -> None:
        self.stopping.set()
        if self.draining:
            await asyncio.wait(self.draining, timeout=self.settings.drain_seconds)
        everything = [*self.tasks, *self.draining, *self.jobs]
        for task in everything:
            task.cancel()
        await asyncio.gather(*everything, return_exceptions=True)
        for cleanup in reversed(self.cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("cleanup failed")


def _exit_if_crashed(task: asyncio.Task) -> None:
    # A worker loop that dies leaves a service that looks alive but does nothing; better to
    # exit and let the supervisor (Kubernetes, or `eventmgr dev`) restart the process.
    if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), SystemExit):
        log.critical("worker %s crashed; exiting", task.get_name(), exc_info=task.exception())
        os._exit(70)


def _log_if_failed(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("job %s failed", task.get_name(), exc_info=task.exception())


def _max_body_bytes(service: str) -> int:
    settings = get_settings()
    return getattr(settings, f"{service}_max_body_bytes", settings.api_max_body_bytes)


def may_read_metrics(request: Request, settings: Settings) -> bool:
    """A bearer token equal to the operator token or the metrics token (either may be unset)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return scheme.lower() == "bearer" and bool(token) and any(
        expected and same_secret(token, expected) for expected in (settings.admin_token, settings.metrics_token))


def _serve_docs_locally(app: FastAPI) -> None:
    """`/docs`: FastAPI's Swagger UI page with its script, style and icon served from this service."""
    app.mount("/docs/assets", StaticFiles(directory=SWAGGER_UI), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/assets/favicon-32x32.png",
            # No badge fetched from the public validator.
            swagger_ui_parameters={"validatorUrl": None})


class RequestOnlyRoute(APIRoute):
    """For a hot route whose endpoint and dependencies (the app-wide and router-wide ones
    included) are coroutine functions taking the `Request` alone, and whose endpoint returns a
    `Response`: they are called directly, without FastAPI's per-request dependency solving and
    response-model pass. Through the app, a request costs 23 us of CPU instead of 39 (measured
    in-process), of about 330 for a single-event request to ingest. The route is documented, and
    its errors handled, as any other; `app.dependency_overrides` applies (an override takes the
    Request alone too); a route declaring anything but the request is refused at start-up."""

    def get_route_handler(self):
        route = _effective_route(self)
        for dependant in [route.dependant, *route.dependant.dependencies]:
            if not _takes_the_request_alone(dependant):
                raise TypeError(f"{self.path}: {dependant.call} must be a coroutine function taking the Request "
                                "alone to use RequestOnlyRoute")
        dependencies = [dependant.call for dependant in route.dependant.dependencies]
        provider = route.dependency_overrides_provider
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            overrides = provider.dependency_overrides if provider is not None else {}
            for dependency in dependencies:
                await overrides.get(dependency, dependency)(request)
            return await endpoint(request)

        return handle


def _effective_route(route: APIRoute):
    """What FastAPI builds the handler for: the route itself or, while a router that includes it
    builds it, the inclusion (the router's dependencies merged in), read as APIRoute reads it."""
    context = _effective_route_context_var.get()
    return context if context is not None and context.original_route is route else route


def _takes_the_request_alone(dependant: Dependant) -> bool:
    """One parameter, the Request (so no sub-dependency either), of a coroutine function."""
    call = dependant.call
    return (inspect.iscoroutinefunction(call) and dependant.request_param_name is not None
            and len(inspect.signature(call).parameters) == 1)


def create_service_app(
    name: str,
    start: Callable[[FastAPI, Runtime], Awaitable[None]],
    **fastapi_options,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings = get_settings()
        settings.require_runtime()
        runtime = Runtime(settings)
        app.state.runtime = runtime
        app.state.settings = settings
        try:
            await start(app, runtime)
            yield
        finally:
            await runtime.shutdown()

    # Every route: query and path parameters hold only storable strings.
    app = FastAPI(title=f"Event Manager {name}", lifespan=lifespan, dependencies=[Depends(check_parameters)],
                  docs_url=None, redoc_url=None, **fastapi_options)
    install_problem_handlers(app)
    _serve_docs_locally(app)
    generate_openapi = app.openapi

    def openapi_with_problems() -> dict:
        # Generated once, on first request, when every route is registered.
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate_openapi())
        return app.openapi_schema

    app.openapi = openapi_with_problems

    # Outermost: body size and type, then the strings and depth of JSON bodies, before anything else reads them.
    app.add_middleware(BodyGuard, max_bytes=lambda: _max_body_bytes(name),
                       max_depth=lambda: get_settings().max_json_depth)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz():
        """Liveness: answers while the process runs; Kubernetes restarts the pod when it stops answering."""
        return {"status": "ok", "service": name}

    @app.get("/readyz", tags=["operations"], summary="Kafka and the database answer")
    async def readyz():
        """Readiness: 200 when the service's Kafka and database connections work, 503 naming the failing one."""
        failures = {}
        for check_name, check in app.state.runtime.checks.items():
            try:
                await asyncio.wait_for(check(), timeout=3)
            except Exception as exc:
                failures[check_name] = type(exc).__name__
        if failures:
            return JSONResponse({"status": "unavailable", "failing": failures}, status_code=503)
        return {"status": "ready", "service": name, "checked": sorted(app.state.runtime.checks)}

    # On the public services the token and its 401 are in the OpenAPI document too.
    guarded = {"openapi_extra": {"security": [{"bearer": []}]}, "responses": {401: {
        "description": "Missing or invalid token",
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}}} if name in PUBLIC_SERVICES else {}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=PlainTextResponse,
             **guarded)
    async def metrics(request: Request):
        """Prometheus text format: request, delivery, matching and scheduler counters and histograms.
        On api and ingest it needs `Authorization: Bearer` with the operator or metrics token."""
        if name in PUBLIC_SERVICES and not may_read_metrics(request, get_settings()):
            raise Unauthorized()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # OpenTelemetry when an OTLP endpoint is configured (shared/tracing.py); nothing otherwise.
    tracing.setup(name, app)
    return app
