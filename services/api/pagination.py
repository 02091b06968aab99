"""Opaque keyset cursors: base64 of the last row's sort key, so pages stay stable while new
rows arrive (they sort before the cursor, never into a page already read)."""

from __future__ import annotations

import base64

import orjson

from shared.errors import InvalidInput


def encode_cursor(*key) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str) -> list:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = orjson.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(value, list):
            raise ValueError
        return value
    except ValueError:
        raise InvalidInput.at(["query", "cursor"], "not a cursor this API issued") from None
