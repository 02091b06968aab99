"""The ingest service: source services POST events here; each is validated, then produced to
Kafka, and the 202 is sent only after the broker acknowledged every event of the request.

Event ids are idempotency keys, scoped by company: the first source to send an id owns it, with
a digest of the event's content (`ingest_ids`, purged with the events' retention). The same
source sending the same event again is accepted again (202, same id; the matcher stores and
delivers it once); another source, or other content under the same id, is a 409 naming the index."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import FastAPI, Request, Response
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Text, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from services.ingest.claims import Claim, Claims
from shared import ratelimit, tracing
from shared.actor import Actor, act_as, client_address
from shared.contracts import ValidatorCache, first_violation, violations
from shared.db import Database
from shared.errors import (
    Conflict,
    ContentTooLarge,
    Forbidden,
    InvalidInput,
    ProblemError,
    Unauthorized,
    Unavailable,
    validation_errors,
)
from shared.gc_tuning import tune_for_throughput
from shared.ids import new_id
from shared.kafka import Topics
from shared.messages import encode, event_message, iso
from shared.models import Company, EventType, Topic
from shared.operations import OPERATIONS_TOPIC
from shared.security import digest
from shared.service import RequestOnlyRoute, Runtime, create_service_app
from shared.validation import Moment

log = logging.getLogger(__name__)

MAX_BATCH = 1000
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# The catalog (topics, event types and their schemas, sources, companies) is reloaded this often:
# a changed schema or validation mode takes effect within it.
CACHE_SECONDS = 10.0
SCHEMA_VIOLATIONS = Counter("em_ingest_schema_violations_total",
                            "Events whose data violated their event type's schema (accepted in warn mode, "
                            "refused in enforce mode)", ["topic", "event_type"])
VIOLATION_LOG_SECONDS = 60.0
# A refused request lists every schema violation (up to 10 an event) until it has this many errors,
# then only each event's first: a batch of 1000 bad events costs a few ms, not a hundred.
DETAILED_ERRORS = 100


class IncomingEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")] | None = Field(
        None, description="Idempotency key, per company: the same source may resend the same event (delivered "
        "once); another source or other content under an id already accepted is a 409"
    )
    topic: Annotated[str, Field(min_length=1, max_length=100)]
    event_type: Annotated[str, Field(min_length=1, max_length=100)]
    company_id: str | None = None
    subject: Annotated[str, Field(max_length=500)] | None = None
    occurred_at: Moment | None = None
    data: dict[str, Any]


def _request_schema() -> dict:
    """What the route reads from the raw body, for the OpenAPI document."""
    event = IncomingEvent.model_json_schema()
    batch = {"type": "object", "additionalProperties": False, "required": ["events"],
             "properties": {"events": {"type": "array", "items": event, "minItems": 1, "maxItems": MAX_BATCH}}}
    return {"anyOf": [event, batch]}


class Accepted(BaseModel):
    accepted: list[str]


# The source whose current token, or previous token within its rotation's overlap, is this digest.
SOURCE_BY_TOKEN = "SELECT id, name, topics, company_ids, enabled FROM source_of_token($1)"


@dataclass(frozen=True)
class PublishingSource:
    """What a request needs of the source that sent it. `company_ids` None: any company. The
    `granted_*` fields are the row's arrays as stored: what the claim checks the row against."""
    id: str
    name: str
    topics: frozenset[str]
    company_ids: frozenset[str] | None
    granted_topics: list[str]
    granted_companies: list[str] | None


class SourceChanged(Exception):
    """The claim found the request's token no longer naming the source, as it was, that the
    request was validated against."""


# Sources remembered per replica (one per token in use); past this many the oldest are dropped.
KNOWN_SOURCES = 10_000


class Sources:
    """The source of each token this replica has seen, so that a request's source costs no round
    trip of its own.

    A token rotated out or revoked, a disabled, deleted or narrowed source must still be refused
    at once on every ingest replica, from the moment the operator's change commits. So what a
    request was validated against is not trusted: the claim, the one call every request makes
    before anything is produced (`claim_ingest_ids`, migration 0018; `Claims`), checks in the same
    statement that the token still names that source, enabled, with the same topics and
    companies, and claims nothing otherwise. The request is then looked up again and checked anew
    (`publish`). An invalidation over the changes topic would arrive as late as the broker lags;
    this needs none. The overlap's end is compared with the database's clock, the same for every
    replica."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self._known: dict[str, PublishingSource] = {}

    def known(self, token_digest: str) -> PublishingSource | None:
        return self._known.get(token_digest)

    def forget(self, token_digest: str) -> None:
        self._known.pop(token_digest, None)

    async def look_up(self, token_digest: str) -> PublishingSource:
        """The source whose current token, or previous token within its rotation's overlap, this
        is; 401 for none, 403 for a disabled source. One prepared statement on the raw pool."""
        self.forget(token_digest)
        row = await self.pool.fetchrow(SOURCE_BY_TOKEN, token_digest)
        if row is None:
            raise Unauthorized()
        if not row["enabled"]:
            raise Forbidden(f"source {row['id']} is disabled")
        source = PublishingSource(row["id"], row["name"], frozenset(row["topics"]),
                                  None if row["company_ids"] is None else frozenset(row["company_ids"]),
                                  list(row["topics"]), None if row["company_ids"] is None else list(row["company_ids"]))
        while len(self._known) >= KNOWN_SOURCES:
            self._known.pop(next(iter(self._known)))
        self._known[token_digest] = source
        return source


class Catalog:
    """Topics, event types and companies, cached for a few seconds so validating an event costs
    no database round trip in the common case. Sources: `Sources`."""

    def __init__(self, db: Database):
        self.db = db
        self.loaded_at = 0.0
        self.topics: dict[str, Topic] = {}
        self.event_types: dict[str, set[str]] = {}
        self.companies: set[str] = set()
        self.validators = ValidatorCache()
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
            schemas: dict[tuple[str, str], dict] = {}
            for row in (await session.scalars(select(EventType))).all():
                event_types.setdefault(row.topic, set()).add(row.name)
                if row.json_schema is not None:
                    schemas[(row.topic, row.name)] = row.json_schema
            self.event_types = event_types
            self.validators.refresh(schemas)
            self.companies = set((await session.scalars(select(Company.id))).all())
        self.loaded_at = time.monotonic()

    async def learn_companies(self, company_ids: set[str]) -> None:
        """Look up, in one query, the companies not known yet (perhaps created since the last
        load), so a batch naming many unknown companies costs one round trip, not one each."""
        missing = list(company_ids - self.companies)
        if missing:
            async with self.db.sessions() as session:
                self.companies.update((await session.scalars(select(Company.id).where(
                    Company.id == func.any(cast(missing, ARRAY(Text)))))).all())


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    return token.strip()


async def _document(request: Request) -> Any:
    """The body, as the service frame already parsed and checked it (strings, depth)."""
    state = request.scope.get("state", {})
    if "json_body" in state:
        return state["json_body"]
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InvalidInput.at(["body"], f"malformed JSON: {exc}") from None


def _parse(body: Any) -> tuple[list[Any], bool]:
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


async def _validate(raw_events: list[Any], batched: bool, source: PublishingSource,
                    catalog: Catalog) -> list[IncomingEvent]:
    """Validate every event; a batch with any bad event is refused whole, naming each bad index."""
    errors: list[dict] = []
    refused: list[tuple[list, str, str]] = []
    allowed = source.company_ids
    events: list[IncomingEvent] = []
    await catalog.learn_companies({raw["company_id"] for raw in raw_events
                                   if isinstance(raw, dict) and isinstance(raw.get("company_id"), str)})
    for index, raw in enumerate(raw_events):
        prefix = ["events", index] if batched else []
        try:
            event = IncomingEvent.model_validate(raw)
        except ValidationError as exc:
            errors += [{"loc": [*prefix, *e["loc"]], "msg": e["msg"]} for e in validation_errors(exc.errors())]
            continue
        if (refusal := _refusal(event, source, allowed, catalog)) is not None:
            refused.append((prefix, *refusal))
            continue
        errors += [{"loc": [*prefix, field], "msg": message} for field, message in _problems(event, catalog)]
        errors += [{"loc": [*prefix, "data", *path], "msg": message}
                   for path, message in _contract(event, catalog, detailed=len(errors) < DETAILED_ERRORS)]
        events.append(event)
    if refused:
        raise _forbidden(refused)
    if errors:
        raise InvalidInput(f"{len(errors)} invalid field(s); nothing was accepted", errors)
    return events


def _refusal(event: IncomingEvent, source: PublishingSource, allowed: frozenset[str] | None,
             catalog: Catalog) -> tuple[str, str] | None:
    """(field, value) when this source may not publish this event at all (403), else None: a topic
    it was not granted, or a company outside its set (`allowed`; None: any). A broadcast event
    carries no company: it reaches companies by subject, so a company set does not limit it."""
    # EM-Operations is Event Manager's own (shared/operations.py), whatever a source was granted.
    if event.topic in catalog.topics and (event.topic not in source.topics or event.topic == OPERATIONS_TOPIC):
        return "topic", event.topic
    if allowed is not None and event.company_id is not None and event.company_id not in allowed:
        return "company_id", event.company_id
    return None


def _forbidden(refused: list[tuple[list, str, str]]) -> Forbidden:
    """The 403 for a request with events its source may not publish: the topics, else each event
    for another company by index."""
    topics = sorted({value for _, field, value in refused if field == "topic"})
    if topics:
        return Forbidden(f"this source may not publish to {', '.join(topics)}")
    errors = [{"loc": [*prefix, field], "msg": f"this source may not publish for company {value!r}"}
              for prefix, field, value in refused]
    return Forbidden(f"{len(errors)} event(s) for companies this source may not publish for; nothing was accepted",
                     errors)


def _problems(event: IncomingEvent, catalog: Catalog) -> list[tuple[str, str]]:
    """(field, message) for what is wrong with a well-formed event against the catalog."""
    topic = catalog.topics.get(event.topic)
    if topic is None:
        return [("topic", f"unknown topic {event.topic!r}")]
    problems = []
    if event.event_type not in catalog.event_types.get(event.topic, set()):
        problems.append(("event_type", f"{event.event_type!r} is not an event type of {event.topic}"))
    if topic.broadcast:
        if event.company_id is not None:
            problems.append(("company_id", f"{event.topic} is broadcast: it reaches companies by subject, "
                                           "not company_id"))
        if not event.subject or not E164.fullmatch(event.subject):
            problems.append(("subject", f"{event.topic} events need the E.164 phone number as subject"))
    elif not event.company_id:
        problems.append(("company_id", f"{event.topic} events need a company_id"))
    elif event.company_id not in catalog.companies:
        problems.append(("company_id", f"unknown company {event.company_id!r}"))
    return problems


_last_logged: dict[tuple[str, str], float] = {}


def _contract(event: IncomingEvent, catalog: Catalog, detailed: bool = True) -> list[tuple[list, str]]:
    """Where `data` violates the event type's schema, when its topic enforces it. In warn mode the
    event is accepted, counted (`em_ingest_schema_violations_total`) and the first violation of
    each event type logged once a minute, by path and keyword only: never the data. Valid data
    costs one compiled `is_valid` call."""
    topic = catalog.topics.get(event.topic)
    if topic is None or topic.validation_mode == "off":
        return []
    validator = catalog.validators.get(event.topic, event.event_type)
    if validator is None or validator.is_valid(event.data):
        return []
    SCHEMA_VIOLATIONS.labels(event.topic, event.event_type).inc()
    if topic.validation_mode == "enforce":
        return violations(validator, event.data) if detailed else [first_violation(validator, event.data)]
    key, now = (event.topic, event.event_type), time.monotonic()
    if key not in _last_logged or now - _last_logged[key] >= VIOLATION_LOG_SECONDS:
        _last_logged[key] = now
        path, message = first_violation(validator, event.data)
        log.warning("schema violation accepted (warn mode) on %s %s at data%s: %s", event.topic, event.event_type,
                    "".join(f"[{p!r}]" for p in path), message.partition(" (")[0])
    return []


def _encoded(events: list[IncomingEvent], batched: bool, max_bytes: int,
             traceparent: str | None = None) -> list[tuple[str, bytes, bytes]]:
    """(id, Kafka value, key) per event, each carrying the request's trace context; refused whole
    (413, naming each index) when any event's encoding exceeds `max_bytes`, so nothing of the
    request is produced."""
    received_at = iso(datetime.now(UTC))
    encoded, too_large = [], []
    for index, event in enumerate(events):
        event_id = event.id or new_id("evt")
        occurred_at = iso(event.occurred_at.astimezone(UTC)) if event.occurred_at else received_at
        value = encode(event_message(event_id, event.topic, event.event_type, event.company_id, event.subject,
                                     occurred_at, received_at, event.data, traceparent))
        if len(value) > max_bytes:
            too_large.append({"loc": ["events", index] if batched else ["body"],
                              "msg": f"the event encodes to {len(value)} bytes; the limit is {max_bytes}"})
        encoded.append((event_id, value, (event.company_id or event_id).encode()))
    if too_large:
        raise ContentTooLarge(f"{len(too_large)} event(s) too large; nothing was accepted", too_large)
    return encoded


def _content_digest(event: IncomingEvent) -> bytes:
    content = event.model_dump(mode="json", exclude={"id"})
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).digest()


async def _claim_ids(claims: Claims, events: list[IncomingEvent], batched: bool, source: PublishingSource,
                     token_digest: str) -> None:
    """Check that the token still names `source` as it was (SourceChanged when not), and record
    the request's ids; an id held by another source or with other content (for the same company,
    or across a broadcast and a company event: a broadcast event is stored under each recipient
    company with its own id) refuses the whole request (409, naming each index) and claims
    nothing. Made by every request (with no ids, it is the source's check alone), together with
    the claims of the requests beside it (services/ingest/claims.py)."""
    given = [(index, event.company_id or "", event.id, _content_digest(event))
             for index, event in enumerate(events) if event.id is not None]
    refusals = await claims.claim(Claim(token_digest, source.id, source.granted_topics, source.granted_companies,
                                        [g[1] for g in given], [g[2] for g in given], [g[3] for g in given]))
    if refusals and refusals[0][0] is None:
        raise SourceChanged()
    if refusals:
        errors = []
        for event_index, reason in refusals:
            index, _, event_id, _ = given[event_index]
            errors.append({"loc": ["events", index, "id"] if batched else ["id"],
                           "msg": f"id {event_id!r} was already accepted {reason}"})
        raise Conflict(f"{len(errors)} event id(s) already in use; nothing was accepted", errors)


async def _settled(sending: Any) -> Exception | None:
    """What became of one send: None once the broker acknowledged it, else the error."""
    if isinstance(sending, Exception):
        return sending
    try:
        await sending
    except Exception as exc:
        return exc
    return None


async def _produce(producer, topic: str, encoded: list[tuple[str, bytes, bytes]], batched: bool) -> None:
    """Send every event (in order), then wait for every acknowledgement. When the broker refuses
    some, say which ids are unknown (503): they may or may not have gone out, and resending the
    request with the same ids is safe (same source, same content: accepted, delivered once)."""
    sendings: list[Any] = []
    for _, value, key in encoded:
        try:
            sendings.append(await producer.send(topic, value, key=key))
        except Exception as exc:  # refused before sending: too large for the producer, broker gone
            sendings.append(exc)
    errors, unknown = [], []
    for index, ((event_id, _, _), sending) in enumerate(zip(encoded, sendings, strict=True)):
        if (failure := await _settled(sending)) is not None:
            unknown.append(event_id)
            errors.append({"loc": ["events", index, "id"] if batched else ["id"],
                           "msg": f"{event_id}: not acknowledged by the broker ({type(failure).__name__})"})
    if errors:
        log.warning("the broker did not acknowledge %d of %d events: %s", len(errors), len(encoded), errors[0])
        raise Unavailable(f"the broker did not acknowledge {len(errors)} of {len(encoded)} events "
                          f"({', '.join(unknown[:20])}{' ...' if len(unknown) > 20 else ''}); "
                          "resend the request with the same ids", errors, headers={"retry-after": "1"})


async def start(app: FastAPI, runtime: Runtime) -> None:
    app.state.db = db = runtime.database(size=4)
    await ratelimit.start(app.state, runtime)
    # The raw pool serves what every request asks: its source (one round trip when not remembered)
    # and its ids (`Claims`: one round trip for the requests of the moment).
    app.state.pool = await runtime.database_pool(8, check="requests")
    app.state.catalog = Catalog(db)
    app.state.sources = Sources(app.state.pool)
    app.state.claims = Claims(app.state.pool)
    app.state.max_event_bytes = runtime.settings.max_event_bytes
    app.state.producer = await runtime.kafka_producer()
    app.state.topic = Topics.of(runtime.settings).events
    tune_for_throughput()


app = create_service_app(
    "ingest",
    start,
    description="Source services publish events here with `Authorization: Bearer <source token>`.",
    version="1.0.0",
)


async def publish(request: Request):
    state = request.app.state
    token, address = _bearer(request), client_address(request)
    token_digest = digest(token)
    remembered = state.sources.known(token_digest)
    if remembered is not None:
        try:
            encoded, batched = await _accepted(request, remembered, token_digest, address, looked_up=False)
        except (ProblemError, SourceChanged):
            # Refused (a 429 and a malformed body included) or found changed while checked against
            # what this replica remembered: answer nothing before the token is looked up again. A
            # revoked token so gets its 401, spends its address's budget and is forgotten, after
            # one request per replica, instead of spending its former source's rate limit.
            encoded = None
        else:
            state.rate_limiter.verified(token_digest)  # the claim just confirmed it
    if remembered is None or encoded is None:
        source = await _authenticated(request, token, token_digest, address)
        encoded, batched = await _accepted(request, source, token_digest, address, looked_up=True)
    await _produce(state.producer, state.topic, encoded, batched)
    # Rendered here: the ids are plain strings, and FastAPI's response-model pass would validate
    # and serialize them again on every request. `response_model` still documents the answer.
    return Response(orjson.dumps({"accepted": [event_id for event_id, _, _ in encoded]}), status_code=202,
                    media_type="application/json")


# A plain route under FastAPI's documentation and error handling (shared/service.py).
app.router.add_api_route(
    "/v1/events",
    publish,
    methods=["POST"],
    status_code=202,
    response_model=Accepted,
    tags=["ingest"],
    summary="Publish one event or a batch of up to 1000",
    description="Answers 202 only after Kafka acknowledged every event. A request is all or nothing: any "
    "invalid event refuses it whole (422, naming each bad index), as does any event over the size limit "
    "(413, `EM_MAX_EVENT_BYTES`). Events without an `id` get one. An `id` is an idempotency key per company: "
    "the same source may resend the same event (202 again, same id, delivered once), while an id already "
    "accepted from another source or with other content is a 409 naming the index. When the broker does "
    "not acknowledge every event, the answer is a 503 naming the unknown ids: resend the request unchanged. "
    "A W3C `traceparent` header is carried to every delivery attempt of the request's events (each "
    "attempt's own `traceparent` is of the same trace); without one, or with an invalid one, a new trace "
    "starts.",
    responses={503: {"description": "The broker did not acknowledge every event; resend with the same ids",
                     "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
               429: ratelimit.TOO_MANY},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": _request_schema(),
        "examples": {"single": {"value": {
            "id": "msg-8812-delivered", "topic": "SCG-Message", "event_type": "message.delivered",
            "company_id": "cmp_01J...", "subject": "+14155550100", "data": {"message_id": "8812"},
        }}}}}}},
    route_class_override=RequestOnlyRoute,
)


async def _authenticated(request: Request, token: str, token_digest: str, address: str | None) -> PublishingSource:
    """The token's source from the database (401, 403; guarded by the failed-authentication budget)."""
    state = request.app.state
    return await ratelimit.authenticate(state, state.settings, address, token,
                                        lambda: state.sources.look_up(token_digest))


async def _accepted(request: Request, source: PublishingSource, token_digest: str, address: str | None,
                    looked_up: bool) -> tuple[list[tuple[str, bytes, bytes]], bool]:
    """Everything before producing, for `source`: its rate limit, the events validated and encoded,
    their ids claimed and the source checked; the encoded events, and whether it was a batch.
    When the source changed since it was `looked_up` just now for this request (a race with the
    operator's change), a 503: sent again, the request meets the source as it is now."""
    state = request.app.state
    settings = state.settings
    await ratelimit.limit(state, settings, f"source:{source.id}", settings.ingest_rate_limit_per_minute)
    act_as(request, Actor("source", source.id, source.name, None, address))
    raw_events, batched = _parse(await _document(request))
    events = await _validate(raw_events, batched, source, await state.catalog.fresh())
    encoded = _encoded(events, batched, state.max_event_bytes, tracing.incoming(request.headers.get(tracing.HEADER)))
    try:
        await _claim_ids(state.claims, events, batched, source, token_digest)
    except SourceChanged:
        if not looked_up:
            raise
        raise Unavailable("the source changed while this request was checked; nothing was accepted, "
                          "send it again", headers={"retry-after": "1"}) from None
    return encoded, batched
