"""The topic catalog ("topic info")."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from services.api.deps import CompanyDep, SessionDep
from services.api.schemas import EventTypePublic, TopicPublic
from shared.errors import NotFound
from shared.models import EventType, Topic

router = APIRouter(prefix="/v1/topics", tags=["topics"])


async def topic_public(session, name: str) -> TopicPublic:
    topic = await session.get(Topic, name)
    if topic is None:
        raise NotFound(f"topic {name!r} does not exist")
    types = (await session.scalars(select(EventType).where(EventType.topic == name).order_by(EventType.name))).all()
    return _public(topic, types)


def _public(topic: Topic, types) -> TopicPublic:
    return TopicPublic(
        name=topic.name,
        service=topic.service,
        description=topic.description,
        requires_event_type=topic.requires_event_type,
        broadcast=topic.broadcast,
        event_types=[EventTypePublic(name=t.name, description=t.description) for t in types],
    )


@router.get("", response_model=list[TopicPublic], summary="List topics and their event types")
async def list_topics(session: SessionDep, _: CompanyDep):
    """The catalog: each topic with its service, whether subscriptions must name event types, and its event types."""
    topics = (await session.scalars(select(Topic).order_by(Topic.name))).all()
    types = (await session.scalars(select(EventType).order_by(EventType.name))).all()
    by_topic: dict[str, list] = {}
    for event_type in types:
        by_topic.setdefault(event_type.topic, []).append(event_type)
    return [_public(topic, by_topic.get(topic.name, [])) for topic in topics]


@router.get("/{name}", response_model=TopicPublic, summary="Topic info: a topic's event types")
async def get_topic(name: str, session: SessionDep, _: CompanyDep):
    """One topic's details and event types (the "topic info" menu)."""
    return await topic_public(session, name)
