"""Event reporting: search, the event viewer, tracking, republish and mark-as-handled."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import and_, or_, select

from services.api.delivery_actions import handle_deliveries, requeue_deliveries
from services.api.deps import CompanyDep, SessionDep
from services.api.filters import matching_events
from services.api.pagination import decode_cursor, encode_cursor
from services.api.schemas import DeliveryStatus
from shared.errors import InvalidInput, NotFound
from shared.models import Delivery, DeliveryAttempt, Event
from shared.validation import Moment

router = APIRouter(prefix="/v1/events", tags=["events"])



class DeliveryView(BaseModel):
    id: str
    subscription_id: str
    delivery_configuration_id: str
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    buffer_file_id: str | None


class EventSummary(BaseModel):
    id: str
    topic: str
    event_type: str
    company_id: str
    subject: str | None
    occurred_at: datetime
    received_at: datetime
    data: dict
    status: str  # the least settled delivery's status, or "unmatched"


class EventView(EventSummary):
    deliveries: list[DeliveryView]


class EventPage(BaseModel):
    data: list[EventSummary]
    next_cursor: str | None


class AttemptView(BaseModel):
    delivery_id: str
    endpoint_url: str
    started_at: datetime
    duration_ms: float
    http_status: int | None
    error: str | None
    outcome: str
    response_excerpt: str | None


class RepublishRequest(BaseModel):
    delivery_configuration_id: str | None = None


class ActionResult(BaseModel):
    event_id: str
    deliveries: int


# Most pressing first: an event's status is that of its least settled delivery.
STATUS_ORDER = ["failed", "pending_retry", "queued", "buffered", "delivered", "handled"]


def event_status(statuses: list[str]) -> str:
    if not statuses:
        return "unmatched"
    return min(statuses, key=STATUS_ORDER.index)


def _summary(event: Event, deliveries: list[Delivery]) -> dict:
    return dict(
        id=event.id, topic=event.topic, event_type=event.event_type, company_id=event.company_id,
        subject=event.subject, occurred_at=event.occurred_at, received_at=event.received_at, data=event.data,
        status=event_status([d.status for d in deliveries]),
    )


async def _deliveries_of(session, company_id: str, event_ids: list[str]) -> dict[str, list[Delivery]]:
    rows = await session.scalars(
        select(Delivery).where(Delivery.company_id == company_id, Delivery.event_id.in_(event_ids))
        .order_by(Delivery.id)
    )
    grouped: dict[str, list[Delivery]] = {}
    for row in rows:
        grouped.setdefault(row.event_id, []).append(row)
    return grouped


@router.get("", response_model=EventPage, summary="Search events",
            description="Newest first. Filters combine with AND; `status`, `delivery_configuration_id` and "
                        "`subscription_id` select events having such a delivery. Pass `next_cursor` back as "
                        "`cursor` for the next page.")
async def search(
    session: SessionDep,
    caller: CompanyDep,
    id: str | None = None,
    topic: str | None = None,
    event_type: str | None = None,
    status: DeliveryStatus | None = None,
    delivery_configuration_id: str | None = None,
    subscription_id: str | None = None,
    subject: str | None = None,
    from_: Moment | None = Query(None, alias="from"),
    to: Moment | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
):
    selection = {"id": id, "topic": topic, "event_type": event_type, "subject": subject, "from": from_, "to": to,
                 "status": status, "delivery_configuration_id": delivery_configuration_id,
                 "subscription_id": subscription_id}
    query = select(Event).where(*matching_events(caller.company_id, selection))
    if cursor:
        received_at, last_id = decode_cursor(cursor, "events")
        received = datetime.fromisoformat(received_at)
        query = query.where(or_(Event.received_at < received,
                                and_(Event.received_at == received, Event.id < last_id)))
    query = query.order_by(Event.received_at.desc(), Event.id.desc()).limit(limit + 1)
    events = (await session.scalars(query)).all()
    more = len(events) > limit
    events = events[:limit]
    deliveries = await _deliveries_of(session, caller.company_id, [e.id for e in events])
    next_cursor = encode_cursor("events", events[-1].received_at.isoformat(), events[-1].id) if more else None
    return EventPage(data=[EventSummary(**_summary(e, deliveries.get(e.id, []))) for e in events],
                     next_cursor=next_cursor)


async def _event(session, company_id: str, event_id: str) -> Event:
    event = await session.get(Event, (company_id, event_id))
    if event is None:
        raise NotFound(f"event {event_id} does not exist")
    return event


@router.get("/{event_id}", response_model=EventView, summary="View an event and its deliveries")
async def view(event_id: str, session: SessionDep, caller: CompanyDep):
    """The event as delivered, its overall status, and one delivery per matched subscription with its status,
    attempts and next attempt time."""
    event = await _event(session, caller.company_id, event_id)
    deliveries = (await _deliveries_of(session, caller.company_id, [event_id])).get(event_id, [])
    return EventView(**_summary(event, deliveries),
                     deliveries=[DeliveryView.model_validate(d, from_attributes=True) for d in deliveries])


@router.get("/{event_id}/attempts", response_model=list[AttemptView], summary="Tracking: every delivery attempt")
async def attempts(event_id: str, session: SessionDep, caller: CompanyDep):
    """Tracking: every HTTP attempt of every delivery of the event, oldest first, with endpoint, time, duration,
    HTTP status or error, outcome and a response excerpt."""
    await _event(session, caller.company_id, event_id)
    rows = await session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.company_id == caller.company_id, DeliveryAttempt.event_id == event_id)
        .order_by(DeliveryAttempt.started_at, DeliveryAttempt.id)
    )
    return [AttemptView.model_validate(row, from_attributes=True) for row in rows]


@router.post("/{event_id}/republish", status_code=202, response_model=ActionResult, summary="Republish an event",
             openapi_extra={"requestBody": {"content": {"application/json": {
                 "example": {"delivery_configuration_id": "dc_01J..."}}}}},
             description="Delivers the event again to every matched subscription, or only through one "
                         "delivery configuration. New attempts appear in tracking.")
async def republish(event_id: str, session: SessionDep, caller: CompanyDep, body: RepublishRequest | None = None):
    await _event(session, caller.company_id, event_id)
    count = await requeue_deliveries(session, caller.company_id, [Delivery.event_id == event_id],
                                     body.delivery_configuration_id if body else None)
    if count == 0:
        raise InvalidInput.at(["delivery_configuration_id"], "the event has no delivery through that configuration")
    await session.commit()
    return ActionResult(event_id=event_id, deliveries=count)


@router.post("/{event_id}/handled", response_model=ActionResult, summary="Mark an event as handled")
async def mark_handled(event_id: str, session: SessionDep, caller: CompanyDep):
    """Every delivery of the event becomes `handled`; pending retries stop."""
    await _event(session, caller.company_id, event_id)
    count = await handle_deliveries(session, caller.company_id, [Delivery.event_id == event_id])
    await session.commit()
    return ActionResult(event_id=event_id, deliveries=count)
