"""The request body in JSON or XML, and the Standard Webhooks headers."""

from __future__ import annotations

import re
import time
from xml.etree import ElementTree

import orjson

from services.dispatcher.signing import Signer

_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# XML 1.0 cannot carry most control characters, even escaped; they are dropped.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def render(document: dict, format: str) -> tuple[bytes, str]:
    if format == "xml":
        return to_xml(document), "application/xml"
    return orjson.dumps(document), "application/json"


def to_xml(document: dict) -> bytes:
    root = ElementTree.Element("event")
    for key, value in document.items():
        _append(root, key, value)
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ElementTree.tostring(root, encoding="unicode").encode()


def _append(parent: ElementTree.Element, key: str, value) -> None:
    """Keys that are XML names become element names; others become `<field name="...">`."""
    if _XML_NAME.match(key) and not key.lower().startswith("xml"):
        element = ElementTree.SubElement(parent, key)
    else:
        element = ElementTree.SubElement(parent, "field", name=_XML_INVALID.sub("", key))
    if isinstance(value, dict):
        element.set("type", "object")
        for child_key, child_value in value.items():
            _append(element, str(child_key), child_value)
    elif isinstance(value, list):
        element.set("type", "array")
        for item in value:
            _append(element, "item", item)
    elif value is None:
        element.set("nil", "true")
    elif isinstance(value, bool):
        element.set("type", "boolean")
        element.text = "true" if value else "false"
    elif isinstance(value, int | float):
        element.set("type", "number")
        element.text = repr(value) if isinstance(value, float) else str(value)
    else:
        element.text = _XML_INVALID.sub("", str(value))


def webhook_headers(delivery_id: str, body: bytes, signer: Signer | None) -> dict[str, str]:
    """`webhook-id` is the delivery id: stable across retries, so receivers can dedupe. The
    signatures (services/dispatcher/signing.py) are those the configuration has in force now."""
    timestamp = str(int(time.time()))
    headers = {"webhook-id": delivery_id, "webhook-timestamp": timestamp}
    if signer is not None:
        headers["webhook-signature"] = signer.signature(delivery_id, timestamp, body)
    return headers
