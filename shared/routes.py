"""Routes: a subscription compiled for matching, and the one rule deciding which routes accept an
event. The matcher (services/matcher) applies it to every event it consumes; the api applies the
very same code to retained events when it replays or simulates a subscription
(services/api/replay.py), so "would have matched" can never drift from "matched"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.criteria import compile_pattern
from shared.messages import EventMessage, delivered_document
from shared.operations import about_configuration


@dataclass(slots=True, frozen=True)
class Route:
    subscription_id: str
    company_id: str
    topic: str
    delivery_configuration_id: str
    realtime: bool
    event_types: frozenset[str] | None  # None: every event type of the topic
    start: float
    end: float | None
    matches: Callable[[dict], bool] | None
    pinned: bool = False  # one dispatcher replica sends its configuration's deliveries (shared/messages.py)

    def accepts(self, event_type: str, occurred: float, document: dict) -> bool:
        if self.event_types is not None and event_type not in self.event_types:
            return False
        if occurred < self.start or (self.end is not None and occurred >= self.end):
            return False
        return self.matches is None or self.matches(document)


def route_from_row(row) -> Route:
    """`row` has the subscription's columns plus its configuration's `mode` (and `pinned`,
    where the caller publishes deliveries)."""
    return Route(
        subscription_id=row["id"],
        company_id=row["company_id"],
        topic=row["topic"],
        delivery_configuration_id=row["delivery_configuration_id"],
        realtime=row["mode"] == "realtime",
        event_types=frozenset(row["event_types"]) if row["event_types"] else None,
        start=_timestamp(row["start_at"]),
        end=_timestamp(row["end_at"]) if row["end_at"] else None,
        matches=compile_pattern(row["matching_criteria"]) if row["matching_criteria"] else None,
        pinned=bool(row.get("pinned")),
    )


def _timestamp(moment: datetime) -> float:
    return moment.timestamp()


def accepting_routes(routes: list[Route], event: EventMessage, company_id: str, event_type: str,
                     occurred: float) -> list[Route]:
    """The routes (of the event's company and topic) that accept the event, as that company sees it."""
    if not routes:
        return []
    document = delivered_document(event, company_id, "")
    matched = [route for route in routes if route.accepts(event_type, occurred, document)]
    about = about_configuration(event)
    if about is not None:  # never through the configuration an operational event is about
        matched = [route for route in matched if route.delivery_configuration_id != about]
    return matched
