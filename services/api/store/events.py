"""Events as one company sees them: search, one event with its deliveries and attempts, and the
actions on one event's deliveries (republish, mark handled)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import audit
from services.api.schemas import EventFilter
from services.api.store import deliveries, fetch_page
from services.api.store.filters import matching_events
from shared.errors import NotFound
from shared.models import Delivery, DeliveryAttempt, Event


async def find(session: AsyncSession, company_id: str, event_id: str) -> Event:
    # Events are keyed by (company, id): a broadcast event is stored once per recipient company.
    event = await session.get(Event, (company_id, event_id))
    if event is None:
        raise NotFound(f"event {event_id} does not exist")
    return event


async def search(session: AsyncSession, company_id: str, event_filter: EventFilter,
                 after: tuple[datetime, str] | None, limit: int) -> tuple[list[Event], bool]:
    """Newest first (by arrival, then id), after the `(received_at, id)` of the previous page's
    last event; and whether more follow."""
    query = select(Event).where(*matching_events(company_id, event_filter))
    if after:
        received_at, event_id = after
        query = query.where(or_(Event.received_at < received_at,
                                and_(Event.received_at == received_at, Event.id < event_id)))
    return await fetch_page(session, query.order_by(Event.received_at.desc(), Event.id.desc()), limit)


async def deliveries_of(session: AsyncSession, company_id: str, event_ids: list[str]) -> dict[str, list[Delivery]]:
    """Each event's deliveries (one per matched subscription), by event id."""
    rows = await session.scalars(
        select(Delivery).where(Delivery.company_id == company_id, Delivery.event_id.in_(event_ids))
        .order_by(Delivery.id))
    grouped: dict[str, list[Delivery]] = {}
    for row in rows:
        grouped.setdefault(row.event_id, []).append(row)
    return grouped


async def attempts_of(session: AsyncSession, company_id: str, event_id: str) -> list[DeliveryAttempt]:
    """Every attempt of every delivery of the event, oldest first."""
    await find(session, company_id, event_id)
    return list((await session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.company_id == company_id, DeliveryAttempt.event_id == event_id)
        .order_by(DeliveryAttempt.started_at, DeliveryAttempt.id))).all())


async def republish(session: AsyncSession, company_id: str, event_id: str,
                    delivery_configuration_id: str | None = None) -> int:
    """How many of the event's deliveries (through that configuration, if given) are queued again."""
    await find(session, company_id, event_id)
    count = await deliveries.requeue(session, company_id, [Delivery.event_id == event_id], delivery_configuration_id)
    audit.record(session, "event.republish", "event", event_id,
                 after={"delivery_configuration_id": delivery_configuration_id, "deliveries": count})
    return count


async def mark_handled(session: AsyncSession, company_id: str, event_id: str) -> int:
    """How many of the event's deliveries became `handled`."""
    await find(session, company_id, event_id)
    count = await deliveries.mark_handled(session, company_id, [Delivery.event_id == event_id])
    audit.record(session, "event.handled", "event", event_id, after={"deliveries": count})
    return count
