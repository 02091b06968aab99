"""What a search selects, as SQL conditions: one place for the event search and the bulk actions
that act on "everything matching a search".

A filter is a dict of the search parameters (`id`, `topic`, `event_type`, `subject`, `from`, `to`
on the event; `status`, `delivery_configuration_id`, `subscription_id` on its deliveries). Times
may be datetimes or ISO strings (bulk jobs keep their filter as JSON)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists

from shared.models import Delivery, Event

EVENT_FIELDS = {"id": Event.id, "topic": Event.topic, "event_type": Event.event_type, "subject": Event.subject}
DELIVERY_FIELDS = {"status": Delivery.status, "delivery_configuration_id": Delivery.delivery_configuration_id,
                   "subscription_id": Delivery.subscription_id}


def _moment(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def event_conditions(selection: dict) -> list:
    conditions = [column == selection[name] for name, column in EVENT_FIELDS.items()
                  if selection.get(name) is not None]
    if selection.get("from") is not None:
        conditions.append(Event.received_at >= _moment(selection["from"]))
    if selection.get("to") is not None:
        conditions.append(Event.received_at < _moment(selection["to"]))
    return conditions


def delivery_conditions(selection: dict) -> list:
    return [column == selection[name] for name, column in DELIVERY_FIELDS.items()
            if selection.get(name) is not None]


def matching_events(company_id: str, selection: dict) -> list:
    """Conditions on Event: the company's events, with a delivery matching the delivery filters."""
    conditions = [Event.company_id == company_id, *event_conditions(selection)]
    if by_delivery := delivery_conditions(selection):
        conditions.append(exists().where(Delivery.company_id == Event.company_id, Delivery.event_id == Event.id,
                                         *by_delivery))
    return conditions


def matching_deliveries(company_id: str, selection: dict) -> list:
    """Conditions on Delivery: the company's deliveries matching the filters, of matching events."""
    conditions = [Delivery.company_id == company_id, *delivery_conditions(selection)]
    if by_event := event_conditions(selection):
        conditions.append(exists().where(Event.company_id == Delivery.company_id, Event.id == Delivery.event_id,
                                         *by_event))
    return conditions
