"""Deciding, for one event, which companies store it and which subscriptions it matches.
Pure: no I/O, so the benchmark can time it alone. Which routes accept an event is decided in
shared/routes.py, the code the api's replay and simulation run too."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.matcher.index import SubscriptionIndex
from shared.messages import EventMessage
from shared.routes import Route, accepting_routes


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
        return [Recipient(company_id, accepting_routes(index.routes_for(company_id, topic), event, company_id,
                                                       event_type, occurred))]
    recipients = []
    for company_id in index.companies_monitoring(event["subject"]):
        routes = accepting_routes(index.routes_for(company_id, topic), event, company_id, event_type, occurred)
        if routes:
            recipients.append(Recipient(company_id, routes))
    return recipients
