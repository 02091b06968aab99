"""Standard Webhooks signatures for one delivery, prepared once per configuration version (in
services/dispatcher/configs.py) so that a delivery costs only the signing itself: one HMAC-SHA256
per secret in force (two during a rotation's grace period) and, when the configuration signs
asymmetrically, one ed25519 signature (`v1a`).

The signed content is `{webhook-id}.{webhook-timestamp}.{body}` for both schemes; the header
lists every signature, space-separated, newest secret first: `v1,<new> v1,<old> v1a,<ed25519>`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def secret_bytes(secret: str) -> bytes:
    """Standard Webhooks secrets are `whsec_` + base64 of the key bytes."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def private_key(encoded: str) -> Ed25519PrivateKey:
    """`whsk_` + base64 of the 32 raw private-key bytes (services/api/store/signing.py makes them)."""
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(encoded.removeprefix("whsk_")))


@dataclass(slots=True, frozen=True)
class Signer:
    current: bytes | None = field(default=None, repr=False)
    previous: bytes | None = field(default=None, repr=False)
    previous_until: float = 0.0  # epoch seconds: the previous secret signs until then
    ed25519: Ed25519PrivateKey | None = field(default=None, repr=False)

    @classmethod
    def of(cls, secrets: dict, ed25519: Ed25519PrivateKey | None = None) -> Signer | None:
        """From a configuration's decrypted secrets; None when it signs nothing."""
        current = secrets.get("signing_secret")
        previous = secrets.get("signing_secret_previous")
        if not current and ed25519 is None:
            return None
        return cls(current=secret_bytes(current) if current else None,
                   previous=secret_bytes(previous) if current and previous else None,
                   previous_until=float(secrets.get("signing_previous_until") or 0.0), ed25519=ed25519)

    def signature(self, message_id: str, timestamp: str, body: bytes, now: float | None = None) -> str:
        signed = f"{message_id}.{timestamp}.".encode() + body
        parts = []
        if self.current is not None:
            parts.append(_hmac(self.current, signed))
            if self.previous is not None and (time.time() if now is None else now) < self.previous_until:
                parts.append(_hmac(self.previous, signed))
        if self.ed25519 is not None:
            parts.append("v1a," + base64.b64encode(self.ed25519.sign(signed)).decode())
        return " ".join(parts)


def _hmac(key: bytes, signed: bytes) -> str:
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
