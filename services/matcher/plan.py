"""What a consumed batch of event messages becomes, decided without I/O: `read_batch` turns
Kafka messages into events (or rejects, to be set aside), `plan_batch` turns events into the
rows to insert and the delivery messages to publish. The worker does the I/O around these;
tests/test_matcher_plan.py tables the cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import orjson

from services.matcher.index import SubscriptionIndex
from services.matcher.matching import recipients_of
from shared.ids import new_id
from shared.messages import decode, delivered_document, delivery_key, delivery_message, valid_event
from shared.statuses import DeliveryStatus
from shared.tracing import new_trace, valid_or_none

EventKey = tuple[str, str]  # (company_id, event_id): an event as one company stores it


@dataclass(slots=True)
class Incoming:
    event: dict
    raw: bytes
    key: bytes | None


@dataclass(slots=True)
class Rejected:
    raw: bytes
    key: bytes | None
    reason: str


def read_batch(raw_messages: list[bytes], keys: list[bytes | None]) -> tuple[list[Incoming], list[Rejected]]:
    """Valid events, first copy of each (company, id) only, and the messages that are not."""
    events, rejected, seen = [], [], set()
    for raw, key in zip(raw_messages, keys, strict=True):
        try:
            event = valid_event(decode(raw))
        except Exception as exc:  # whatever is wrong with it, it is this message's problem alone
            rejected.append(Rejected(raw, key, f"undecodable event message: {type(exc).__name__}: {exc}"))
            continue
        # A repeated id in the same batch: the database would keep one row, but both copies
        # would be published. The first one wins, as it does across batches.
        identity = (event["company_id"], event["id"])
        if identity not in seen:
            seen.add(identity)
            events.append(Incoming(event, raw, key))
    return events, rejected


class EventRow(NamedTuple):  # the columns of INSERT_EVENTS, in order
    company_id: str
    id: str
    topic: str
    event_type: str
    subject: str | None
    occurred_at: datetime
    received_at: datetime
    data: str
    fanned_out: bool  # true at once when it has no realtime delivery to publish
    trace_parent: str  # W3C traceparent (shared/tracing.py)


class DeliveryRow(NamedTuple):  # the columns of INSERT_DELIVERIES, in order
    id: str
    company_id: str
    event_id: str
    subscription_id: str
    delivery_configuration_id: str
    status: DeliveryStatus


@dataclass(slots=True)
class BatchPlan:
    events: list[EventRow] = field(default_factory=list)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    # The Kafka message of each realtime delivery, with its key, by the event it belongs to.
    outgoing: dict[EventKey, list[tuple[bytes | None, dict]]] = field(default_factory=dict)
    scheduled_count: int = 0

    @property
    def realtime_count(self) -> int:
        return sum(len(messages) for messages in self.outgoing.values())


def plan_batch(index: SubscriptionIndex, events: list[dict]) -> BatchPlan:
    plan = BatchPlan()
    for event in events:
        recipients = recipients_of(index, event)
        if not recipients:
            continue
        # Parsed and encoded once, however many companies a broadcast event reaches.
        occurred_at = datetime.fromisoformat(event["occurred_at"])
        received_at = datetime.fromisoformat(event["received_at"])
        data = orjson.dumps(event["data"]).decode()
        # An event without one (Event Manager's own, or from before tracing) gets a trace here, so
        # its retries share it too.
        trace_parent = valid_or_none(event.get("traceparent")) or new_trace()
        for recipient in recipients:
            company_id = recipient.company_id
            has_realtime = any(route.realtime for route in recipient.routes)
            plan.events.append(EventRow(company_id, event["id"], event["topic"], event["event_type"],
                                        event["subject"], occurred_at, received_at, data, not has_realtime,
                                        trace_parent))
            for route in recipient.routes:
                delivery_id = new_id("dlv")
                status = DeliveryStatus.QUEUED if route.realtime else DeliveryStatus.BUFFERED
                plan.deliveries.append(DeliveryRow(delivery_id, company_id, event["id"], route.subscription_id,
                                                   route.delivery_configuration_id, status))
                if route.realtime:
                    message = delivery_message(delivery_id, route.delivery_configuration_id, company_id,
                                               delivered_document(event, company_id, route.subscription_id),
                                               traceparent=trace_parent)
                    plan.outgoing.setdefault((company_id, event["id"]), []).append(
                        (delivery_key(message, route.pinned), message))
                else:
                    plan.scheduled_count += 1
    return plan
