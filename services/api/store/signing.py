"""Signing secrets that rotate, and each company's ed25519 signing key.

A configuration's secrets (encrypted together, services/api/store/delivery_configurations.py)
hold `signing_secret` and, during a rotation's grace period, `signing_secret_previous` with
`signing_previous_until` (epoch seconds): the dispatcher signs with both until then
(services/dispatcher/signing.py)."""

from __future__ import annotations

import base64
import secrets as random
import time
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import audit
from services.api.store import find_owned, saved
from shared.errors import Conflict
from shared.ids import new_id
from shared.models import DeliveryConfiguration, SigningKey
from shared.security import decrypt_json, encrypt_json

SECRET_BYTES = 32


def new_signing_secret() -> str:
    """Standard Webhooks: `whsec_` + base64 of random bytes."""
    return "whsec_" + base64.b64encode(random.token_bytes(SECRET_BYTES)).decode()


def previous_expires_at(secrets: dict) -> datetime | None:
    """When the previous secret stops signing, while it still does."""
    until = secrets.get("signing_previous_until")
    if not secrets.get("signing_secret_previous") or not until or until <= time.time():
        return None
    return datetime.fromtimestamp(until, UTC)


def shown(configuration: DeliveryConfiguration, secrets: dict) -> dict:
    """What a configuration's answer says of its signing: whether and how it signs, until when the
    previous secret still signs, and the secret itself only in the answer that generated it."""
    return {"signing_secret_set": bool(secrets.get("signing_secret")),
            "signing_secret": getattr(configuration, "generated_signing_secret", None),
            "signing_previous_expires_at": previous_expires_at(secrets),
            "asymmetric_signing": bool(configuration.asymmetric_signing)}


async def find(session: AsyncSession, company_id: str, configuration_id: str, lock: bool = False,
               ) -> DeliveryConfiguration:
    return await find_owned(session, DeliveryConfiguration, company_id, configuration_id, "delivery configuration",
                            lock=lock)


def secrets_of(configuration: DeliveryConfiguration, secret_key: str) -> dict:
    return decrypt_json(secret_key, configuration.secrets_encrypted)


def _store(configuration: DeliveryConfiguration, values: dict, secret_key: str) -> None:
    kept = {k: v for k, v in values.items() if v is not None}
    configuration.secrets_encrypted = encrypt_json(secret_key, kept) if kept else None


async def rotate(session: AsyncSession, company_id: str, configuration_id: str, grace_seconds: int,
                 secret_key: str) -> tuple[DeliveryConfiguration, str]:
    """A new secret at once; the one it replaces keeps signing too for `grace_seconds`. A
    configuration without a secret simply gets one."""
    configuration = await find(session, company_id, configuration_id, lock=True)
    values = secrets_of(configuration, secret_key)
    secret, before = new_signing_secret(), values.get("signing_secret")
    values["signing_secret"] = secret
    if before and grace_seconds > 0:
        values["signing_secret_previous"] = before
        values["signing_previous_until"] = time.time() + grace_seconds
    else:
        values.pop("signing_secret_previous", None)
        values.pop("signing_previous_until", None)
    _store(configuration, values, secret_key)
    audit.record(session, "signing_secret.rotate", "delivery_configuration", configuration.id,
                 after={"grace_seconds": grace_seconds, "previous_expires_at": previous_expires_at(values),
                        "secrets": {"signing_secret": "changed" if before else "set"}})
    return await saved(session, configuration), secret


async def revoke_previous(session: AsyncSession, company_id: str, configuration_id: str,
                          secret_key: str) -> DeliveryConfiguration:
    """Ends a rotation's grace period now: only the current secret signs."""
    configuration = await find(session, company_id, configuration_id, lock=True)
    values = secrets_of(configuration, secret_key)
    revoked = values.pop("signing_secret_previous", None) is not None
    if revoked:
        values.pop("signing_previous_until", None)
        _store(configuration, values, secret_key)
    audit.record(session, "signing_secret.revoke_previous", "delivery_configuration", configuration.id,
                 after={"secrets": {"signing_secret_previous": "removed"} if revoked else {}})
    return await saved(session, configuration)


async def reveal(session: AsyncSession, company_id: str, configuration_id: str, secret_key: str) -> str:
    configuration = await find(session, company_id, configuration_id)
    secret = secrets_of(configuration, secret_key).get("signing_secret")
    if not secret:
        raise Conflict("this configuration has no signing secret: rotate to create one")
    # Not a change, but who saw a secret again is worth knowing; the caller commits the record.
    audit.record(session, "signing_secret.reveal", "delivery_configuration", configuration.id)
    return secret


async def company_key(session: AsyncSession, company_id: str, secret_key: str) -> SigningKey:
    """The company's ed25519 key, made the first time it is needed (concurrent first uses agree:
    one row per company)."""
    key = await session.scalar(select(SigningKey).where(SigningKey.company_id == company_id))
    if key is not None:
        return key
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    raw_public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    made = await session.execute(insert(SigningKey).values(
        id=new_id("sk"), company_id=company_id, algorithm="ed25519",
        public_key="whpk_" + base64.b64encode(raw_public).decode(),
        private_key_encrypted=encrypt_json(secret_key,
                                           {"private_key": "whsk_" + base64.b64encode(raw_private).decode()}),
    ).on_conflict_do_nothing(index_elements=["company_id"]).returning(SigningKey.id))
    key = await session.scalar(select(SigningKey).where(SigningKey.company_id == company_id))
    if made.first() is not None:  # this call made it (a concurrent first use may have won instead)
        audit.record(session, "signing_key.create", "signing_key", key.id,
                     after={"algorithm": key.algorithm, "public_key": key.public_key})
    return key
