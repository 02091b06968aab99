"""The ingest service: source services POST events here; each is validated, then produced to
Kafka, and the 202 is sent only after the broker acknowledged every event of the request."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from shared.db import Database
from shared.errors import Forbidden, InvalidInput, Unauthorized, validation_errors
from shared.ids import new_id
from shared.kafka import Topics
from shared.messages import encode, event_message, iso
from shared.models import Company, EventType, Source, Topic
from shared.security import digest
from shared.service import Runtime, create_service_app

MAX_BATCH = 1000
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
CACHE_SECONDS = 10.0


class IncomingEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")] | None = Field(
        None, description="Idempotency key: an id already accepted is not delivered twice"
    )
    topic: Annotated[str, Field(min_length=1, max_length=100)]
    event_type: Annotated[str, Field(min_length=1, max_length=100)]
    company_id: str | None = None
    subject: Annotated[str, Field(max_length=500)] | None = None
    occurred_at: AwareDatetime | None = None
    data: dict[str, Any]


class Accepted(BaseModel):
    accepted: list[str]


class Catalog:
    """Topics, event types, sources and companies, cached for a few seconds so a request costs
    no database round trip in the common case."""

    def __init__(self, db: Database):
        self.db = db
        self.loaded_at = 0.0
        self.topics: dict[str, Topic] = {}
        self.event_types: dict[str, set[str]] = {}
        self.sources: dict[str, Source] = {}
        self.companies: set[str] = set()
        self._lock = asyncio.Lock()

    async def fresh(self) -> Catalog:
        if time.monotonic() - self.loaded_at > CACHE_SECONDS:
            async with self._lock:
                if time.monotonic() - self.loaded_at > CACHE_SECONDS:
                    await self._load()
        return self

    async def _load(self) -> None:
        async with self.db.sessions() as session:
            self.topics = {t.name: t for t in (await session.scalars(select(Topic))).all()}
            event_types: dict[str, set[str]] = {}
            for row in (await session.scalars(select(EventType))).all():
                event_types.setdefault(row.topic, set()).add(row.name)
            self.event_types = event_types
            self.sources = {s.token_digest: s for s in (await session.scalars(select(Source))).all()}
            self.companies = set((await session.scalars(select(Company.id))).all())
        self.loaded_at = time.monotonic()

    async def source_for(self, token: str) -> Source:
        token_digest = digest(token)
        source = (await self.fresh()).sources.get(token_digest)
        if source is None:  # perhaps created since the last load: one indexed lookup
            async with self.db.sessions() as session:
                source = await session.scalar(select(Source).where(Source.token_digest == token_digest))
            if source is None:
                raise Unauthorized()
            self.sources[token_digest] = source
        return source

    async def knows_company(self, company_id: str) -> bool:
        if company_id not in self.companies:  # perhaps created since the last load
            async with self.db.sessions() as session:
                if await session.get(Company, company_id) is not None:
                    self.companies.add(company_id)
        return company_id in self.companies


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    return token.strip()


def _parse(raw: bytes) -> tuple[list[Any], bool]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput.at(["body"], f"malformed JSON: {exc}") from None
    if isinstance(body, dict) and "events" in body and "topic" not in body:
        events = body["events"]
        if not isinstance(events, list) or not events:
            raise InvalidInput.at(["events"], "events must be a non-empty list")
        if len(events) > MAX_BATCH:
            raise InvalidInput.at(["events"], f"at most {MAX_BATCH} events per request")
        return events, True
    if isinstance(body, dict):
        return [body], False
    raise InvalidInput.at(["body"], "send one event object or {\"events\": [...]}")


async def _validate(raw_events: list[Any], batched: bool, source: Source, catalog: Catalog) -> list[IncomingEvent]:
    """Validate every event; a batch with any bad event is refused whole, naming each bad index."""
    errors: list[dict] = []
    forbidden: list[str] = []
    events: list[IncomingEvent] = []

    def where(index: int, *loc) -> list:
        return ["events", index, *loc] if batched else list(loc)

    for index, raw in enumerate(raw_events):
        try:
            event = IncomingEvent.model_validate(raw)
        except ValidationError as exc:
            errors += [{"loc": where(index, *e["loc"]), "msg": e["msg"]} for e in validation_errors(exc.errors())]
            continue
        topic = catalog.topics.get(event.topic)
        if topic is None:
            errors.append({"loc": where(index, "topic"), "msg": f"unknown topic {event.topic!r}"})
            continue
        if event.topic not in source.topics:
            forbidden.append(event.topic)
            continue
        if event.event_type not in catalog.event_types.get(event.topic, set()):
            errors.append({"loc": where(index, "event_type"),
                           "msg": f"{event.event_type!r} is not an event type of {event.topic}"})
        if topic.broadcast:
            if event.company_id is not None:
                errors.append({"loc": where(index, "company_id"),
                               "msg": f"{event.topic} is broadcast: it reaches companies by subject, not company_id"})
            if not event.subject or not E164.match(event.subject):
                errors.append({"loc": where(index, "subject"),
                               "msg": f"{event.topic} events need the E.164 phone number as subject"})
        elif not event.company_id:
            errors.append({"loc": where(index, "company_id"), "msg": f"{event.topic} events need a company_id"})
        elif not await catalog.knows_company(event.company_id):
            errors.append({"loc": where(index, "company_id"), "msg": f"unknown company {event.company_id!r}"})
        events.append(event)
    if forbidden:
        raise Forbidden(f"this source may not publish to {', '.join(sorted(set(forbidden)))}")
    if errors:
        raise InvalidInput(f"{len(errors)} invalid field(s); nothing was accepted", errors)
    return events


async def start(app: FastAPI, runtime: Runtime) -> None:
    app.state.catalog = Catalog(runtime.database(size=4))
    app.state.producer = await runtime.kafka_producer()
    app.state.topic = Topics.of(runtime.settings).events


app = create_service_app(
    "ingest",
    start,
    description="Source services publish events here with `Authorization: Bearer <source token>`.",
    version="1.0.0",
)


@app.post(
    "/v1/events",
    status_code=202,
    response_model=Accepted,
    tags=["ingest"],
    summary="Publish one event or a batch of up to 1000",
    description="Answers 202 only after Kafka acknowledged every event. A batch with any invalid event is "
    "rejected whole (422, naming each bad index). Events without an `id` get one; an `id` already accepted "
    "is delivered once.",
    openapi_extra={"requestBody": {"content": {"application/json": {"examples": {"single": {"value": {
        "id": "msg-8812-delivered", "topic": "SCG-Message", "event_type": "message.delivered",
        "company_id": "cmp_01J...", "subject": "+14155550100", "data": {"message_id": "8812"},
    }}}}}}},
)
async def publish(request: Request):
    catalog: Catalog = request.app.state.catalog
    source = await catalog.source_for(_bearer(request))
    raw_events, batched = _parse(await request.body())
    events = await _validate(raw_events, batched, source, await catalog.fresh())
    now = datetime.now(UTC)
    received_at = iso(now)
    producer = request.app.state.producer
    topic = request.app.state.topic
    futures, accepted = [], []
    for event in events:
        event_id = event.id or new_id("evt")
        occurred_at = iso(event.occurred_at.astimezone(UTC)) if event.occurred_at else received_at
        message = event_message(event_id, event.topic, event.event_type, event.company_id, event.subject,
                                occurred_at, received_at, event.data)
        key = (event.company_id or event_id).encode()
        futures.append(await producer.send(topic, encode(message), key=key))
        accepted.append(event_id)
    await asyncio.gather(*futures)
    return Accepted(accepted=accepted)
