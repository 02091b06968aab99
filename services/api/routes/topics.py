"""The topic catalog ("topic info")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.api import asyncapi
from services.api.deps import Reader, SessionDep
from services.api.schemas import TopicPublic
from services.api.store import topics as store

router = APIRouter(prefix="/v1/topics", tags=["topics"])


@router.get("", response_model=list[TopicPublic], summary="List topics and their event types")
async def list_topics(session: SessionDep, _: Reader):
    """The catalog: each topic with its service, whether subscriptions must name event types, and its event types."""
    return [TopicPublic.of(topic, types) for topic, types in await store.catalog(session)]


@router.get("/asyncapi.json", response_model=dict[str, Any], summary="The catalog as an AsyncAPI 3.0 document")
async def asyncapi_document(session: SessionDep, _: Reader):
    """One channel per topic, one message per event type; each message's payload is the delivered JSON body
    with `data` described by the event type's JSON Schema, so receivers can generate their handlers."""
    return asyncapi.document(await store.catalog(session))


@router.get("/{name}", response_model=TopicPublic, summary="Topic info: a topic's event types")
async def get_topic(name: str, session: SessionDep, _: Reader):
    """One topic's details and event types (the "topic info" menu)."""
    return TopicPublic.of(*await store.find(session, name))
