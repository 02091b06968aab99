"""Subscriptions: which topics and event types a company receives, through which configuration."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.api.changes import announce
from services.api.deps import Reader, SessionDep, Writer
from services.api.schemas import SubscriptionCreate, SubscriptionPublic, SubscriptionUpdate
from services.api.store import subscriptions as store

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


@router.post("", status_code=201, response_model=SubscriptionPublic, summary="Create a subscription",
             description="Events of the topic (and event types, and matching criteria) that occur within "
                         "[start_at, end_at) are delivered through the delivery configuration.")
async def create(body: SubscriptionCreate, request: Request, session: SessionDep, caller: Writer):
    subscription = await store.create(session, caller.company_id, body)
    announce(request, session, "subscriptions", caller.company_id)
    await session.commit()
    return subscription


@router.get("", response_model=list[SubscriptionPublic], summary="List subscriptions")
async def list_subscriptions(session: SessionDep, caller: Reader, topic: str | None = None,
                             delivery_configuration_id: str | None = None):
    """The company's subscriptions, optionally only one topic's or one configuration's."""
    return await store.list_all(session, caller.company_id, topic, delivery_configuration_id)


@router.get("/{subscription_id}", response_model=SubscriptionPublic, summary="Get a subscription")
async def get(subscription_id: str, session: SessionDep, caller: Reader):
    """One subscription."""
    return await store.find(session, caller.company_id, subscription_id)


@router.patch("/{subscription_id}", response_model=SubscriptionPublic, summary="Change a subscription")
async def update(subscription_id: str, body: SubscriptionUpdate, request: Request, session: SessionDep,
                 caller: Writer):
    """Fields left out keep their value; `matching_criteria: null` and `end_at: null` remove them. The
    result is validated as a whole. Matchers apply the change within 2 seconds."""
    subscription = await store.update(session, caller.company_id, subscription_id, body)
    announce(request, session, "subscriptions", caller.company_id)
    await session.commit()
    return subscription


@router.delete("/{subscription_id}", status_code=204, summary="Delete a subscription")
async def delete(subscription_id: str, request: Request, session: SessionDep, caller: Writer):
    """Stops matching for this subscription within 2 seconds; past deliveries stay visible."""
    await store.delete(session, caller.company_id, subscription_id)
    announce(request, session, "subscriptions", caller.company_id)
    await session.commit()
    return Response(status_code=204)
