"""Subscriptions: which topics and event types a company receives, through which configuration."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import select

from services.api.changes import announce
from services.api.deps import CompanyDep, SessionDep
from services.api.routes.delivery_configurations import owned_configuration
from services.api.schemas import SubscriptionCreate, SubscriptionPublic, SubscriptionUpdate
from shared.criteria import CriteriaError, compile_pattern
from shared.errors import InvalidInput, NotFound
from shared.ids import new_id
from shared.models import EventType, Subscription, Topic

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


async def _validate(session, company_id: str, values: dict) -> None:
    topic = await session.get(Topic, values["topic"])
    if topic is None:
        raise InvalidInput.at(["topic"], f"unknown topic {values['topic']!r}; see GET /v1/topics")
    known = set((await session.scalars(select(EventType.name).where(EventType.topic == topic.name))).all())
    for index, event_type in enumerate(values["event_types"]):
        if event_type not in known:
            raise InvalidInput.at(["event_types", index], f"{event_type!r} is not an event type of {topic.name}")
    if topic.requires_event_type and not values["event_types"]:
        raise InvalidInput.at(["event_types"], f"{topic.name} requires at least one event type")
    try:
        await owned_configuration(session, company_id, values["delivery_configuration_id"])
    except NotFound:
        raise InvalidInput.at(["delivery_configuration_id"], "no such delivery configuration") from None
    if values["matching_criteria"] is not None:
        try:
            compile_pattern(values["matching_criteria"])
        except CriteriaError as exc:
            raise InvalidInput.at(["matching_criteria", *exc.path], exc.message) from None
    if values["end_at"] is not None and values["end_at"] <= values["start_at"]:
        raise InvalidInput.at(["end_at"], "end_at must be after start_at")


async def _owned(session, company_id: str, subscription_id: str) -> Subscription:
    subscription = await session.get(Subscription, subscription_id)
    if subscription is None or subscription.company_id != company_id:
        raise NotFound(f"subscription {subscription_id} does not exist")
    return subscription


@router.post("", status_code=201, response_model=SubscriptionPublic, summary="Create a subscription",
             description="Events of the topic (and event types, and matching criteria) that occur within "
                         "[start_at, end_at) are delivered through the delivery configuration.")
async def create(body: SubscriptionCreate, request: Request, session: SessionDep, caller: CompanyDep):
    values = body.model_dump()
    await _validate(session, caller.company_id, values)
    values["event_types"] = sorted(set(values["event_types"]))
    subscription = Subscription(id=new_id("sub"), company_id=caller.company_id, **values)
    session.add(subscription)
    announce(request, session, "subscriptions", caller.company_id)
    await session.commit()
    await session.refresh(subscription)
    return subscription


@router.get("", response_model=list[SubscriptionPublic], summary="List subscriptions")
async def list_subscriptions(session: SessionDep, caller: CompanyDep, topic: str | None = None,
                             delivery_configuration_id: str | None = None):
    """The company's subscriptions, optionally only one topic's or one configuration's."""
    query = select(Subscription).where(Subscription.company_id == caller.company_id).order_by(Subscription.id)
    if topic:
        query = query.where(Subscription.topic == topic)
    if delivery_configuration_id:
        query = query.where(Subscription.delivery_configuration_id == delivery_configuration_id)
    return (await session.scalars(query)).all()


@router.get("/{subscription_id}", response_model=SubscriptionPublic, summary="Get a subscription")
async def get(subscription_id: str, session: SessionDep, caller: CompanyDep):
    """One subscription."""
    return await _owned(session, caller.company_id, subscription_id)


@router.patch("/{subscription_id}", response_model=SubscriptionPublic, summary="Change a subscription")
async def update(subscription_id: str, body: SubscriptionUpdate, request: Request, session: SessionDep,
                 caller: CompanyDep):
    """Fields left out keep their value; the result is validated as a whole. Matchers apply the change within 2
    seconds."""
    subscription = await _owned(session, caller.company_id, subscription_id)
    changes = body.model_dump(exclude_unset=True)  # the schema refuses null where a value is required
    values = {
        field: getattr(subscription, field)
        for field in ("topic", "event_types", "delivery_configuration_id", "matching_criteria", "start_at",
                      "end_at", "active")
    }
    values.update(changes)
    await _validate(session, caller.company_id, values)
    values["event_types"] = sorted(set(values["event_types"]))
    for field, value in values.items():
        setattr(subscription, field, value)
    announce(request, session, "subscriptions", caller.company_id)
    await session.commit()
    await session.refresh(subscription)
    return subscription


@router.delete("/{subscription_id}", status_code=204, summary="Delete a subscription")
async def delete(subscription_id: str, request: Request, session: SessionDep, caller: CompanyDep):
    """Stops matching for this subscription within 2 seconds; past deliveries stay visible."""
    await session.delete(await _owned(session, caller.company_id, subscription_id))
    announce(request, session, "subscriptions", caller.company_id)
    await session.commit()
    return Response(status_code=204)
