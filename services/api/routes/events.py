"""Event reporting: search, the event viewer, tracking, republish and mark-as-handled."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.api.deps import Bulk, Reader, SessionDep, Writer
from services.api.pagination import decode_cursor, encode_cursor
from services.api.schemas import EventSearch
from services.api.store import events as store
from shared.errors import InvalidInput
from shared.models import Delivery, Event
from shared.statuses import DeliveryStatus, event_status

router = APIRouter(prefix="/v1/events", tags=["events"])


class DeliveryPublic(BaseModel):
    id: str
    subscription_id: str
    delivery_configuration_id: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    buffer_file_id: str | None


class EventPublic(BaseModel):
    id: str
    topic: str
    event_type: str
    company_id: str
    subject: str | None
    occurred_at: datetime
    received_at: datetime
    data: dict
    status: str  # the most pressing delivery's status, or "unmatched" (shared.statuses.event_status)


class EventWithDeliveriesPublic(EventPublic):
    deliveries: list[DeliveryPublic]


class EventPage(BaseModel):
    data: list[EventPublic]
    next_cursor: str | None


class AttemptPublic(BaseModel):
    delivery_id: str
    endpoint_url: str
    started_at: datetime
    duration_ms: float
    http_status: int | None
    error: str | None
    outcome: str
    response_excerpt: str | None
    # The effective delivery policy of the attempt and what followed it: timeout, method, attempt
    # number of max_attempts, retry_on, decision, failure, retried_because, next_delay_seconds.
    policy: dict | None = None


class RepublishRequest(BaseModel):
    delivery_configuration_id: str | None = None


class ActionResult(BaseModel):
    event_id: str
    deliveries: int


def _event_fields(event: Event, deliveries: list[Delivery]) -> dict:
    return dict(
        id=event.id, topic=event.topic, event_type=event.event_type, company_id=event.company_id,
        subject=event.subject, occurred_at=event.occurred_at, received_at=event.received_at, data=event.data,
        status=event_status([d.status for d in deliveries]),
    )


@router.get("", response_model=EventPage, summary="Search events",
            description="Newest first. Filters combine with AND; `status`, `delivery_configuration_id` and "
                        "`subscription_id` select events having such a delivery. Pass `next_cursor` back as "
                        "`cursor` for the next page.")
async def search(session: SessionDep, caller: Reader, query: Annotated[EventSearch, Query()]):
    after = None
    if query.cursor:
        received_at, event_id = decode_cursor(query.cursor, "events")
        after = (datetime.fromisoformat(received_at), event_id)
    events, more = await store.search(session, caller.company_id, query, after, query.limit)
    deliveries = await store.deliveries_of(session, caller.company_id, [e.id for e in events])
    next_cursor = encode_cursor("events", events[-1].received_at.isoformat(), events[-1].id) if more else None
    return EventPage(data=[EventPublic(**_event_fields(e, deliveries.get(e.id, []))) for e in events],
                     next_cursor=next_cursor)


@router.get("/{event_id}", response_model=EventWithDeliveriesPublic, summary="View an event and its deliveries")
async def view(event_id: str, session: SessionDep, caller: Reader):
    """The event as delivered, its overall status, and one delivery per matched subscription with its status,
    attempts and next attempt time."""
    event = await store.find(session, caller.company_id, event_id)
    deliveries = (await store.deliveries_of(session, caller.company_id, [event_id])).get(event_id, [])
    return EventWithDeliveriesPublic(
        **_event_fields(event, deliveries),
        deliveries=[DeliveryPublic.model_validate(d, from_attributes=True) for d in deliveries])


@router.get("/{event_id}/attempts", response_model=list[AttemptPublic], summary="Tracking: every delivery attempt")
async def attempts(event_id: str, session: SessionDep, caller: Reader):
    """Tracking: every HTTP attempt of every delivery of the event, oldest first, with endpoint, time, duration,
    HTTP status or error, outcome and a response excerpt."""
    rows = await store.attempts_of(session, caller.company_id, event_id)
    return [AttemptPublic.model_validate(row, from_attributes=True) for row in rows]


@router.post("/{event_id}/republish", status_code=202, response_model=ActionResult, summary="Republish an event",
             openapi_extra={"requestBody": {"content": {"application/json": {
                 "example": {"delivery_configuration_id": "dc_01J..."}}}}},
             description="Delivers the event again to every matched subscription, or only through one "
                         "delivery configuration. New attempts appear in tracking.")
async def republish(event_id: str, session: SessionDep, caller: Bulk, body: RepublishRequest | None = None):
    count = await store.republish(session, caller.company_id, event_id,
                                  body.delivery_configuration_id if body else None)
    if count == 0:
        raise InvalidInput.at(["delivery_configuration_id"], "the event has no delivery through that configuration")
    await session.commit()
    return ActionResult(event_id=event_id, deliveries=count)


@router.post("/{event_id}/handled", response_model=ActionResult, summary="Mark an event as handled")
async def mark_handled(event_id: str, session: SessionDep, caller: Writer):
    """Every delivery of the event becomes `handled`; pending retries stop."""
    count = await store.mark_handled(session, caller.company_id, event_id)
    await session.commit()
    return ActionResult(event_id=event_id, deliveries=count)
