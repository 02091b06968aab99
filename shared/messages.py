"""What travels on Kafka between the services. Plain dicts encoded with orjson (pydantic per
message costs too much on the hot path); every message carries `v`, its schema version, and
readers refuse versions they do not know instead of guessing. An optional field may be added
without a new version, when readers that predate it lose nothing by ignoring it and readers
after it take its absence as its default (a rolling upgrade has both on the same topic);
anything an older reader would misread takes a new version.

Optional fields added so: `traceparent` (event and delivery messages), the W3C trace context of
the event (shared/tracing.py), valid or absent: absent means a new trace at each attempt.

Topics (prefix `em.` by default):
- `events.v1`      ingest -> matcher. Key: company id (broadcast events: the event id).
- `deliveries.v1`  matcher/retry poller -> dispatcher. Key: `delivery_key` (a pinned
                   configuration's id, otherwise none: any partition).
- `changes.v1`     api -> every matcher and dispatcher replica: "company X changed its Y".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict

import orjson

SCHEMA_VERSION = 1
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)


class EventMessage(TypedDict):
    v: int
    id: str
    topic: str
    event_type: str
    company_id: str | None
    subject: str | None
    occurred_at: str
    received_at: str
    data: dict[str, Any]
    traceparent: NotRequired[str | None]  # the source's trace context, or one ingest started


class DeliveryMessage(TypedDict):
    v: int
    delivery_id: str
    delivery_configuration_id: str
    company_id: str
    attempt: int  # attempts already made before this one
    succeeded_endpoints: list[str]
    event: dict[str, Any]  # the document exactly as the endpoint receives it
    traceparent: NotRequired[str | None]  # the event's trace context; each attempt is a span of it


ChangeKind = Literal["subscriptions", "delivery_configurations", "monitored_numbers"]


class ChangeMessage(TypedDict):
    v: int
    kind: ChangeKind
    company_id: str


class UnknownSchemaVersion(ValueError):
    pass


def encode(message: dict) -> bytes:
    return orjson.dumps(message)


def decode(raw: bytes | None) -> dict:
    """The message as a dict; ValueError for anything else (a tombstone, JSON that is not an object)."""
    if raw is None:
        raise ValueError("an empty message (a tombstone)")
    message = orjson.loads(raw)
    if not isinstance(message, dict):
        raise ValueError(f"a message is a JSON object, not {type(message).__name__}")
    if message.get("v") != SCHEMA_VERSION:
        raise UnknownSchemaVersion(f"message schema version {message.get('v')!r} is not {SCHEMA_VERSION}")
    return message


def valid_event(message: dict) -> EventMessage:
    """The event message's shape, checked once at the worker's door: a hand-made or corrupted
    message raises ValueError here instead of failing deep inside matching."""
    for field in ("id", "topic", "event_type", "occurred_at", "received_at"):
        if not isinstance(message.get(field), str):
            raise ValueError(f"event field {field!r} must be a string")
    for field in ("company_id", "subject"):
        if not isinstance(message.get(field), str | None):
            raise ValueError(f"event field {field!r} must be a string or null")
    if not isinstance(message.get("data"), dict):
        raise ValueError("event field 'data' must be an object")
    for field in ("occurred_at", "received_at"):
        moment = datetime.fromisoformat(message[field])
        if moment.tzinfo is None:
            raise ValueError(f"event field {field!r} must carry a UTC offset")
        if not EARLIEST <= moment < LATEST:  # what ingest accepts; PostgreSQL would store year 1 as is
            raise ValueError(f"event field {field!r} is outside 1970-2200")
    return message  # type: ignore[return-value]


def valid_delivery(message: dict) -> DeliveryMessage:
    """The delivery message's shape, checked at the dispatcher's door (see `valid_event`)."""
    for field in ("delivery_id", "delivery_configuration_id", "company_id"):
        if not isinstance(message.get(field), str):
            raise ValueError(f"delivery field {field!r} must be a string")
    if not isinstance(message.get("attempt"), int) or message["attempt"] < 0:
        raise ValueError("delivery field 'attempt' must be a count")
    if not isinstance(message.get("succeeded_endpoints"), list):
        raise ValueError("delivery field 'succeeded_endpoints' must be a list")
    if not isinstance(message.get("event"), dict) or not isinstance(message["event"].get("id"), str):
        raise ValueError("delivery field 'event' must be an object with an id")
    return message  # type: ignore[return-value]


def event_message(event_id: str, topic: str, event_type: str, company_id: str | None, subject: str | None,
                  occurred_at: str, received_at: str, data: dict, traceparent: str | None = None) -> EventMessage:
    return {"v": SCHEMA_VERSION, "id": event_id, "topic": topic, "event_type": event_type, "company_id": company_id,
            "subject": subject, "occurred_at": occurred_at, "received_at": received_at, "data": data,
            "traceparent": traceparent}


def delivered_document(event: EventMessage | dict, company_id: str, subscription_id: str) -> dict:
    """The body an endpoint receives (the contract's "Delivered request")."""
    return {
        "id": event["id"],
        "topic": event["topic"],
        "event_type": event["event_type"],
        "company_id": company_id,
        "subject": event["subject"],
        "occurred_at": event["occurred_at"],
        "data": event["data"],
        "subscription_id": subscription_id,
    }


def delivery_message(delivery_id: str, configuration_id: str, company_id: str, document: dict,
                     attempt: int = 0, succeeded_endpoints: list[str] | None = None,
                     traceparent: str | None = None) -> dict:
    return {
        "v": SCHEMA_VERSION,
        "delivery_id": delivery_id,
        "delivery_configuration_id": configuration_id,
        "company_id": company_id,
        "attempt": attempt,
        "succeeded_endpoints": succeeded_endpoints or [],
        "event": document,
        "traceparent": traceparent,
    }


# A configuration whose deliveries one dispatcher replica must send, with `c` its row: a
# throttled one (one replica owns its bucket, so the limit holds across replicas) and one
# whose OAuth grant rotates its refresh token (two replicas refreshing with the same token
# would have the second refused, or the token revoked). `DeliveryConfiguration.pinned` is the
# same rule on the dispatcher's copy.
PINNED_SQL = "(jsonb_typeof(c.throttle) = 'object' OR c.authentication->>'grant_type' = 'refresh_token')"


def delivery_key(message: dict, pinned: bool) -> bytes | None:
    """The Kafka key of a delivery message, which picks its partition and so the dispatcher
    replica that sends it: a pinned configuration's id (PINNED_SQL), so one replica sends all its
    deliveries; otherwise none, so the producer spreads them over every partition and replica
    and one busy configuration is not held to one process's core. (A delivery queued spread
    before its configuration was pinned is put back under the configuration's key by the
    dispatcher: services/dispatcher/worker.py.)"""
    return message["delivery_configuration_id"].encode() if pinned else None


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
