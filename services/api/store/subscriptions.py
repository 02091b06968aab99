"""Subscriptions: which topics and event types a company receives, through which of its delivery
configurations, from when to when, and with which matching criteria."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import audit
from services.api.schemas import SubscriptionCreate, SubscriptionUpdate
from services.api.store import delivery_configurations, find_owned, saved
from services.api.store.patch import merge_patch
from shared.criteria import CriteriaError, compile_pattern
from shared.errors import InvalidInput, NotFound
from shared.ids import new_id
from shared.models import EventType, Subscription, Topic

FIELDS = ("topic", "event_types", "delivery_configuration_id", "matching_criteria", "start_at", "end_at", "active")


async def find(session: AsyncSession, company_id: str, subscription_id: str) -> Subscription:
    return await find_owned(session, Subscription, company_id, subscription_id, "subscription")


async def list_all(session: AsyncSession, company_id: str, topic: str | None = None,
                   delivery_configuration_id: str | None = None) -> list[Subscription]:
    query = select(Subscription).where(Subscription.company_id == company_id).order_by(Subscription.id)
    if topic:
        query = query.where(Subscription.topic == topic)
    if delivery_configuration_id:
        query = query.where(Subscription.delivery_configuration_id == delivery_configuration_id)
    return list((await session.scalars(query)).all())


async def create(session: AsyncSession, company_id: str, body: SubscriptionCreate) -> Subscription:
    subscription = Subscription(id=new_id("sub"), company_id=company_id)
    await _write(session, subscription, body.model_dump())
    audit.record(session, "subscription.create", "subscription", subscription.id, after=_audited(subscription))
    return await saved(session, subscription)


async def update(session: AsyncSession, company_id: str, subscription_id: str,
                 patch: SubscriptionUpdate) -> Subscription:
    """The merged result is checked as a whole, as a new subscription would be."""
    subscription = await find(session, company_id, subscription_id)
    before = _audited(subscription)
    await _write(session, subscription, merge_patch({f: getattr(subscription, f) for f in FIELDS}, patch))
    audit.record(session, "subscription.update", "subscription", subscription.id,
                 *audit.changed(before, _audited(subscription)))
    return await saved(session, subscription)


async def delete(session: AsyncSession, company_id: str, subscription_id: str) -> None:
    """Past deliveries of the subscription stay visible."""
    subscription = await find(session, company_id, subscription_id)
    audit.record(session, "subscription.delete", "subscription", subscription.id, before=_audited(subscription))
    await session.delete(subscription)


def _audited(subscription: Subscription) -> dict[str, Any]:
    return copy.deepcopy({field: getattr(subscription, field) for field in FIELDS})


async def _write(session: AsyncSession, subscription: Subscription, values: dict[str, Any]) -> None:
    await _check(session, subscription.company_id, values)
    values["event_types"] = sorted(set(values["event_types"]))
    for field in FIELDS:
        setattr(subscription, field, values[field])


async def _check(session: AsyncSession, company_id: str, values: dict[str, Any]) -> None:
    await check_matching(session, company_id, values)
    try:
        await delivery_configurations.find(session, company_id, values["delivery_configuration_id"])
    except NotFound:
        raise InvalidInput.at(["delivery_configuration_id"], "no such delivery configuration") from None


async def check_matching(session: AsyncSession, company_id: str, values: dict[str, Any]) -> None:
    """What decides matching (topic, event types, criteria, window), checked as for a new
    subscription: InvalidInput naming the field. Also what a simulation is checked with."""
    await _check_topic(session, values["topic"], values["event_types"])
    if values["matching_criteria"] is not None:
        try:
            compile_pattern(values["matching_criteria"])
        except CriteriaError as exc:
            raise InvalidInput.at(["matching_criteria", *exc.path], exc.message) from None
    start_at, end_at = values.get("start_at"), values["end_at"]
    if end_at is not None and start_at is not None and end_at <= start_at:
        raise InvalidInput.at(["end_at"], "end_at must be after start_at")


async def _check_topic(session: AsyncSession, name: str, event_types: list[str]) -> None:
    """The topic is in the catalog, the event types are its own, and one is named where it must be."""
    topic = await session.get(Topic, name)
    if topic is None:
        raise InvalidInput.at(["topic"], f"unknown topic {name!r}; see GET /v1/topics")
    known = set((await session.scalars(select(EventType.name).where(EventType.topic == topic.name))).all())
    for index, event_type in enumerate(event_types):
        if event_type not in known:
            raise InvalidInput.at(["event_types", index], f"{event_type!r} is not an event type of {topic.name}")
    if topic.requires_event_type and not event_types:
        raise InvalidInput.at(["event_types"], f"{topic.name} requires at least one event type")
