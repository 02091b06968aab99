"""The topic catalog as an AsyncAPI 3.0 document, so receivers can generate their handlers: one
channel per topic, one message per event type, whose payload is the delivered document (the
realtime request's JSON body) with `data` described by the event type's schema."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

ASYNCAPI_VERSION = "3.0.0"
_NOT_ID = re.compile(r"[^\w.\-]")  # AsyncAPI component keys: ^[\w\d.\-_]+$

ANY_DATA = {"type": "object", "description": "No schema is published for this event type's data"}


def component_id(name: str) -> str:
    return _NOT_ID.sub("_", name)


def delivered_payload(topic: str, event_type: str, data_schema: dict | None) -> dict:
    """The delivered document (`POST <endpoint url>`, JSON format) for one topic and event type."""
    nullable_string = {"type": ["string", "null"]}
    return {
        "type": "object",
        "required": ["id", "topic", "event_type", "occurred_at", "data", "subscription_id"],
        "properties": {
            "id": {"type": "string", "description": "The event's id: stable across retries and republishing"},
            "topic": {"type": "string", "const": topic},
            "event_type": {"type": "string", "const": event_type},
            "company_id": {**nullable_string, "description": "null for broadcast topics"},
            "subject": {**nullable_string, "description": "What the event is about (for NIS-Events, the number)"},
            "occurred_at": {"type": "string", "format": "date-time"},
            # Its own `$id`: the schema's local `$ref`s (#/$defs/...) resolve against itself, not
            # against the delivered document it is embedded in.
            "data": {"$id": f"urn:event-manager:{quote(topic)}:{quote(event_type)}", **data_schema}
                    if data_schema is not None else ANY_DATA,
            "subscription_id": {"type": "string", "description": "The subscription that matched the event"},
        },
    }


def _message(topic, event_type) -> dict:
    message: dict[str, Any] = {
        "name": event_type.name,
        "title": f"{topic.name} {event_type.name}",
        "summary": event_type.description or event_type.name,
        "contentType": "application/json",
        "headers": {"type": "object", "properties": {
            "webhook-id": {"type": "string", "description": "Standard Webhooks: the delivery's stable id"},
            "webhook-timestamp": {"type": "string", "description": "Standard Webhooks: seconds since the epoch"},
            "webhook-signature": {"type": "string", "description": "Standard Webhooks: space-separated signatures"},
        }},
        "payload": delivered_payload(topic.name, event_type.name, event_type.json_schema),
    }
    if event_type.example is not None:
        message["examples"] = [{"name": "example", "payload": {
            "id": "evt_01JDEXAMPLE", "topic": topic.name, "event_type": event_type.name,
            "company_id": None if topic.broadcast else "cmp_01JDEXAMPLE",
            "subject": "+14155550100" if topic.broadcast else None,
            "occurred_at": "2026-11-02T09:30:00Z", "data": event_type.example,
            "subscription_id": "sub_01JDEXAMPLE"}}]
    return message


def document(catalog: list[tuple[Any, list[Any]]]) -> dict:
    """`catalog`: (Topic, [EventType]) pairs as the store returns them."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic, event_types in catalog:
        channel_id = component_id(topic.name)
        refs = {}
        for event_type in event_types:
            message_id = component_id(f"{topic.name}.{event_type.name}")
            messages[message_id] = _message(topic, event_type)
            refs[component_id(event_type.name)] = {"$ref": f"#/components/messages/{message_id}"}
        channels[channel_id] = {
            "address": topic.name, "title": topic.name,
            "description": f"{topic.description} ({topic.service}). Validation of data at ingest: "
                           f"{topic.validation_mode}.",
            "messages": refs,
        }
        operations[f"receive.{channel_id}"] = {
            "action": "receive", "title": f"Receive {topic.name} events",
            "summary": "Event Manager delivers the events a subscription matches to the company's endpoint",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{name}"} for name in refs],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": "Event Manager event catalog", "version": "1.0.0",
                 "description": "Every topic and event type a subscription can name. Each message is the JSON "
                                "body Event Manager sends to an endpoint; its `data` follows the event type's "
                                "JSON Schema (Draft 2020-12) where one is published."},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
