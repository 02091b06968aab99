"""Operational events: what Event Manager itself tells a company about its own delivery (an
endpoint failing, disabled or recovered, a delivery that used up its retries, a buffer file
that could not be written, a token endpoint that refuses the credentials).

They are ordinary events of the system topic `EM-Operations` (in the catalog like any other),
company-scoped, published to the events topic by the service that notices, and delivered
through the company's own subscriptions, so a company can send them to another endpoint or
collect them by schedule. Only Event Manager publishes to this topic (ingest refuses it). An
operational event about a configuration is never delivered through that same configuration
(services/matcher/matching.py), and the failure of an operational event's own delivery raises
no further operational event, so a failing configuration cannot feed a loop."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from enum import StrEnum

from aiokafka import AIOKafkaProducer

from shared.ids import new_id
from shared.messages import encode, event_message, iso

log = logging.getLogger(__name__)

OPERATIONS_TOPIC = "EM-Operations"


class OperationalEvent(StrEnum):
    ENDPOINT_FAILING = "endpoint.failing"
    ENDPOINT_DISABLED = "endpoint.disabled"
    ENDPOINT_RECOVERED = "endpoint.recovered"
    DELIVERY_EXHAUSTED = "delivery.exhausted"
    BUFFER_FILE_FAILED = "buffer_file.failed"
    OAUTH_TOKEN_REFUSED = "oauth.token_refused"


def operational_event(event_type: OperationalEvent, company_id: str, delivery_configuration_id: str,
                      **details) -> dict:
    """The event message. `data.delivery_configuration_id` names the configuration it is about,
    which is also what keeps it from being delivered through that configuration."""
    now = iso(datetime.now(UTC))
    return event_message(new_id("op"), OPERATIONS_TOPIC, event_type.value, company_id, None, now, now,
                         {"delivery_configuration_id": delivery_configuration_id, **details})


def about_configuration(event: dict) -> str | None:
    """The configuration an operational event is about (None for any other event)."""
    if event["topic"] != OPERATIONS_TOPIC or not isinstance(event.get("data"), dict):
        return None
    return event["data"].get("delivery_configuration_id")


async def emit(producer: AIOKafkaProducer, events_topic: str, event: dict) -> None:
    """Publish one operational event. A notice that cannot be published is logged, never raised:
    it must not fail the delivery, file or check that noticed it."""
    try:
        await producer.send_and_wait(events_topic, encode(event), key=event["company_id"].encode())
    except Exception as exc:
        log.warning("operational event %s for %s not published: %s", event["event_type"], event["company_id"], exc)
