"""Test events: what the api prepares for the dispatcher (services/dispatcher/testing.py) and
reads back. Nothing here writes an event or a delivery, so no counter or search ever sees a test."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.store import saved
from services.api.store.delivery_configurations import find
from shared.errors import Conflict, InvalidInput
from shared.ids import new_id
from shared.messages import delivery_message, iso
from shared.models import DeliveryConfiguration, EventType, TestDelivery


async def start(session: AsyncSession, company_id: str, configuration_id: str, event_type: str | None,
                topic: str | None) -> tuple[DeliveryConfiguration, TestDelivery, dict]:
    """The configuration, the row the dispatcher will complete, and the delivery message to publish."""
    configuration = await find(session, company_id, configuration_id)
    if configuration.mode != "realtime":
        raise Conflict("a scheduled configuration writes buffer files: only a realtime one sends test events")
    if not event_type:
        raise InvalidInput.at(["event_type"], "give the event type whose example to send")
    query = select(EventType).where(EventType.name == event_type)
    if topic is not None:
        query = query.where(EventType.topic == topic)
    found = list((await session.scalars(query.order_by(EventType.topic))).all())
    if not found:
        where = f" in topic {topic}" if topic else ""
        raise InvalidInput.at(["event_type"], f"no event type {event_type!r}{where} in the catalog")
    if len(found) > 1:
        raise InvalidInput.at(["topic"], f"event type {event_type!r} is in several topics "
                                         f"({', '.join(t.topic for t in found)}): say which")
    kind = found[0]
    row = await saved(session, TestDelivery(id=new_id("tdl"), company_id=company_id,
                                            delivery_configuration_id=configuration.id, event_type=kind.name))
    document = {"id": new_id("test"), "topic": kind.topic, "event_type": kind.name, "company_id": company_id,
                "subject": None, "occurred_at": iso(datetime.now(UTC)), "data": kind.example or {},
                "subscription_id": None, "test": True}
    message = {**delivery_message(row.id, configuration.id, company_id, document), "test": True}
    return configuration, row, message


async def attempts(session: AsyncSession, company_id: str, test_id: str) -> list[dict] | None:
    """The attempts the dispatcher wrote, or None while it has not yet."""
    row = (await session.execute(select(TestDelivery.attempts, TestDelivery.completed_at).where(
        TestDelivery.id == test_id, TestDelivery.company_id == company_id))).first()
    return row.attempts if row is not None and row.completed_at is not None else None
