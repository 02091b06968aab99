"""The topic catalog: read by companies, extended by operators. Not company data: every company
sees the same catalog."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import audit
from services.api.schemas import EventTypeCreate, EventTypeUpdate, TopicCreate, TopicUpdate
from shared.contracts import compile_schema, violations
from shared.errors import Conflict, InvalidInput, NotFound
from shared.models import EventType, Topic


async def find(session: AsyncSession, name: str) -> tuple[Topic, list[EventType]]:
    """The topic and its event types, by name."""
    topic = await session.get(Topic, name)
    if topic is None:
        raise NotFound(f"topic {name!r} does not exist")
    types = (await session.scalars(select(EventType).where(EventType.topic == name).order_by(EventType.name))).all()
    return topic, list(types)


async def catalog(session: AsyncSession) -> list[tuple[Topic, list[EventType]]]:
    """Every topic with its event types, by name."""
    topics = (await session.scalars(select(Topic).order_by(Topic.name))).all()
    by_topic: dict[str, list[EventType]] = {}
    for event_type in (await session.scalars(select(EventType).order_by(EventType.name))).all():
        by_topic.setdefault(event_type.topic, []).append(event_type)
    return [(topic, by_topic.get(topic.name, [])) for topic in topics]


def check_example(schema: dict | None, example: dict | None, loc: list) -> None:
    """422 at `loc` + the path within the example where it breaks its schema."""
    if schema is None or example is None:
        return
    found = violations(compile_schema(schema), example)
    if found:
        raise InvalidInput("the example does not validate against the event type's schema",
                           [{"loc": [*loc, *path], "msg": message} for path, message in found])


async def create(session: AsyncSession, body: TopicCreate) -> None:
    for index, event_type in enumerate(body.event_types):
        check_example(event_type.json_schema, event_type.example, ["event_types", index, "example"])
    session.add(Topic(**body.model_dump(exclude={"event_types"})))
    try:
        await session.flush()  # the topic first: event_types refer to it
    except IntegrityError:
        raise Conflict(f"topic {body.name!r} already exists") from None
    session.add_all(EventType(topic=body.name, **t.model_dump()) for t in body.event_types)
    audit.record(session, "topic.create", "topic", body.name, after=body.model_dump(), company_id=None)
    await session.flush()


async def add_event_type(session: AsyncSession, topic: str, body: EventTypeCreate) -> None:
    if await session.get(Topic, topic) is None:
        raise NotFound(f"topic {topic!r} does not exist")
    check_example(body.json_schema, body.example, ["example"])
    session.add(EventType(topic=topic, **body.model_dump()))
    audit.record(session, "event_type.create", "event_type", f"{topic}/{body.name}", after=body.model_dump(),
                 company_id=None)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"event type {body.name!r} already exists on {topic!r}") from None


async def update(session: AsyncSession, name: str, body: TopicUpdate) -> None:
    topic = await session.get(Topic, name, with_for_update=True)
    if topic is None:
        raise NotFound(f"topic {name!r} does not exist")
    audit.record(session, "topic.update", "topic", name, before={"validation_mode": topic.validation_mode},
                 after={"validation_mode": body.validation_mode}, company_id=None)
    topic.validation_mode = body.validation_mode
    await session.flush()


async def update_event_type(session: AsyncSession, topic: str, name: str, body: EventTypeUpdate) -> None:
    """Changes what was sent; the example (new or kept) must validate against the schema (new or kept)."""
    event_type = await session.get(EventType, (topic, name), with_for_update=True)
    if event_type is None:
        raise NotFound(f"event type {name!r} of topic {topic!r} does not exist")
    sent = body.model_fields_set
    before = {"description": event_type.description, "json_schema": event_type.json_schema,
              "example": event_type.example}
    if "description" in sent and body.description is not None:
        event_type.description = body.description
    if "json_schema" in sent:
        event_type.json_schema = body.json_schema
    if "example" in sent:
        event_type.example = body.example
    check_example(event_type.json_schema, event_type.example, ["example"])
    audit.record(session, "event_type.update", "event_type", f"{topic}/{name}", *audit.changed(before, {
        "description": event_type.description, "json_schema": event_type.json_schema,
        "example": event_type.example}), company_id=None)
    await session.flush()
