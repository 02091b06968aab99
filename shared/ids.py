"""Opaque, time-sortable ids with a type prefix (`evt_01J...`), in the spirit of Svix's KSUIDs.

48 bits of milliseconds then 80 random bits, Crockford base32: ids sort by creation time, which
keeps B-tree inserts at the right edge and makes keyset pagination by id meaningful.
"""

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    millis = int(time.time() * 1000) & ((1 << 48) - 1)
    randomness = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_base32((millis << 80) | randomness, 26)}"
