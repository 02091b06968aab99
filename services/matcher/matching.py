"""Deciding, for one event, which companies store it and which subscriptions it matches.
Pure: no I/O, so the benchmark can time it alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.matcher.index import Route, SubscriptionIndex
from shared.messages import EventMessage, delivered_document
from shared.operations import about_configuration


@dataclass(slots=True)
class Recipient:
    """The event as one company stores it, and the routes it matched there."""

    company_id: str
    routes: list[Route] = field(default_factory=list)


def recipients_of(index: SubscriptionIndex, event: EventMessage) -> list[Recipient]:
    topic, event_type = event["topic"], event["event_type"]
    occurred = datetime.fromisoformat(event["occurred_at"]).timestamp()
    if event["company_id"] is not None:
        company_id = event["company_id"]
        # A company-scoped event is stored even when nothing matches: the event viewer shows
        # everything that happened in the company's environment.
        return [Recipient(company_id, _matching(index.routes_for(company_id, topic), event, company_id,
                                                 event_type, occurred))]
    recipients = []
    for company_id in index.companies_monitoring(event["subject"]):
        routes = _matching(index.routes_for(company_id, topic), event, company_id, event_type, occurred)
        if routes:
            recipients.append(Recipient(company_id, routes))
    return recipients


def _matching(routes: list[Route], event: EventMessage, company_id: str, event_type: str,
              occurred: float) -> list[Route]:
    if not routes:
        return []
    document = delivered_document(event, company_id, "")
    matched = [route for route in routes if route.accepts(event_type, occurred, document)]
    about = about_configuration(event)
    if about is not None:  # never through the configuration an operational event is about
        matched = [route for route in matched if route.delivery_configuration_id != about]
    return matched
