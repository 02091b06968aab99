"""Opaque keyset cursors: the last row's sort key, so pages stay stable while new rows arrive
(they sort before the cursor, never into a page already read). A cursor is signed with an HMAC
keyed from `EM_SECRET_KEY` over the listing's name and the key, so one this API did not issue,
one altered by hand, or one from another listing is a 422, and what a route decodes is always
the key it encoded."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

import orjson

from shared.errors import InvalidInput
from shared.settings import get_settings

SIGNATURE_BYTES = 12


def _signature(listing: str, payload: bytes) -> bytes:
    key = hashlib.sha256(b"em-cursor:" + (get_settings().secret_key or "").encode()).digest()
    return hmac.new(key, listing.encode() + b"\0" + payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(listing: str, *key) -> str:
    payload = orjson.dumps(list(key))
    return f"{_b64(payload)}.{_b64(_signature(listing, payload))}"


def decode_cursor(cursor: str, listing: str) -> list:
    try:
        payload_text, _, signature_text = cursor.partition(".")
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except (ValueError, binascii.Error):
        payload, signature = b"", b""
    if not signature or not hmac.compare_digest(signature, _signature(listing, payload)):
        raise InvalidInput.at(["query", "cursor"], f"not a cursor this API issued for {listing}")
    return orjson.loads(payload)
