"""The topic catalog: read by companies, extended by operators. Not company data: every company
sees the same catalog."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.schemas import EventTypeCreate, TopicCreate
from shared.errors import Conflict, NotFound
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


async def create(session: AsyncSession, body: TopicCreate) -> None:
    session.add(Topic(**body.model_dump(exclude={"event_types"})))
    session.add_all(EventType(topic=body.name, **t.model_dump()) for t in body.event_types)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"topic {body.name!r} already exists") from None


async def add_event_type(session: AsyncSession, topic: str, body: EventTypeCreate) -> None:
    if await session.get(Topic, topic) is None:
        raise NotFound(f"topic {topic!r} does not exist")
    session.add(EventType(topic=topic, **body.model_dump()))
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"event type {body.name!r} already exists on {topic!r}") from None
