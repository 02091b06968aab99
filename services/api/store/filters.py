"""What an EventFilter selects, as SQL conditions: one place for the event search and for the
bulk actions that act on "everything matching a search". The event fields (`id`, `topic`,
`event_type`, `subject`, `from`, `to`) filter the event, the delivery fields (`status`,
`delivery_configuration_id`, `subscription_id`) its deliveries."""

from __future__ import annotations

from sqlalchemy import exists

from services.api.schemas import EventFilter
from shared.models import Delivery, Event

EVENT_FIELDS = {"id": Event.id, "topic": Event.topic, "event_type": Event.event_type, "subject": Event.subject}
DELIVERY_FIELDS = {"status": Delivery.status, "delivery_configuration_id": Delivery.delivery_configuration_id,
                   "subscription_id": Delivery.subscription_id}


def _event_conditions(event_filter: EventFilter) -> list:
    conditions = [column == getattr(event_filter, name) for name, column in EVENT_FIELDS.items()
                  if getattr(event_filter, name) is not None]
    if event_filter.from_ is not None:
        conditions.append(Event.received_at >= event_filter.from_)
    if event_filter.to is not None:
        conditions.append(Event.received_at < event_filter.to)
    return conditions


def _delivery_conditions(event_filter: EventFilter) -> list:
    return [column == getattr(event_filter, name) for name, column in DELIVERY_FIELDS.items()
            if getattr(event_filter, name) is not None]


def matching_events(company_id: str, event_filter: EventFilter) -> list:
    """Conditions on Event: the company's events, with a delivery matching the delivery filters."""
    conditions = [Event.company_id == company_id, *_event_conditions(event_filter)]
    if by_delivery := _delivery_conditions(event_filter):
        conditions.append(exists().where(Delivery.company_id == Event.company_id, Delivery.event_id == Event.id,
                                         *by_delivery))
    return conditions


def matching_deliveries(company_id: str, event_filter: EventFilter) -> list:
    """Conditions on Delivery: the company's deliveries matching the filters, of matching events."""
    conditions = [Delivery.company_id == company_id, *_delivery_conditions(event_filter)]
    if by_event := _event_conditions(event_filter):
        conditions.append(exists().where(Event.company_id == Delivery.company_id, Event.id == Delivery.event_id,
                                         *by_event))
    return conditions
