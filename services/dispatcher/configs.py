"""Delivery configurations as the dispatcher needs them, decrypted once and cached until a
change notification for their company arrives."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field

import asyncpg
import orjson

from services.dispatcher.policy import Policy
from services.dispatcher.signing import Signer, private_key
from shared import tls
from shared.security import decrypt_json, encrypt_json


@dataclass(slots=True)
class DeliveryConfiguration:
    id: str
    company_id: str
    active: bool
    paused: bool
    mode: str
    endpoints: list[dict]
    format: str
    throttle: dict | None
    authentication: dict
    secrets: dict = field(repr=False)
    policy: Policy | None = None
    # Sent with every request besides Event Manager's own: custom headers, an API key.
    headers: dict | None = field(default=None, repr=False)
    # Its own verifying TLS context (a client certificate, a private CA); None: the session's.
    ssl: ssl.SSLContext | None = None

    # The signatures it sends (services/dispatcher/signing.py); None: unsigned.
    signer: Signer | None = field(default=None, repr=False)

    @property
    def signing_secret(self) -> str | None:
        return self.secrets.get("signing_secret")

    @property
    def pinned(self) -> bool:
        """One replica sends its deliveries: shared/messages.py PINNED_SQL, on this copy."""
        return isinstance(self.throttle, dict) or self.authentication.get("grant_type") == "refresh_token"


log = logging.getLogger(__name__)

# Change notifications refresh entries at once; this bounds staleness if one was ever lost.
MAX_AGE_SECONDS = 60.0


class ConfigurationCache:
    def __init__(self, pool: asyncpg.Pool, secret_key: str, retry_jitter: float = 0.2):
        self.pool = pool
        self.secret_key = secret_key
        self.retry_jitter = retry_jitter
        self._configurations: dict[str, DeliveryConfiguration | None] = {}
        self._loaded_at: dict[str, float] = {}
        self._confirmed_at: dict[str, float] = {}  # see `confirmed`
        self._locks: dict[str, asyncio.Lock] = {}

    def _stale(self, configuration_id: str) -> bool:
        return time.monotonic() - self._loaded_at.get(configuration_id, -MAX_AGE_SECONDS) >= MAX_AGE_SECONDS

    async def get(self, configuration_id: str) -> DeliveryConfiguration | None:
        if self._stale(configuration_id):
            # One query per configuration, however many deliveries ask at the same moment.
            async with self._locks.setdefault(configuration_id, asyncio.Lock()):
                if self._stale(configuration_id):
                    reading_at = time.monotonic()  # the copy is as old as the moment it was asked for
                    row = await self.pool.fetchrow(
                        "SELECT c.id, c.company_id, c.active, c.paused, c.mode, c.endpoints, c.format, c.throttle, "
                        "c.authentication, c.secrets_encrypted, c.policy, k.private_key_encrypted AS signing_key "
                        "FROM delivery_configurations c LEFT JOIN signing_keys k "
                        "ON c.asymmetric_signing AND k.company_id = c.company_id WHERE c.id = $1",
                        configuration_id,
                    )
                    # In a thread: decrypting and building a TLS context take milliseconds that
                    # must not hold up every other delivery on this loop.
                    self._configurations[configuration_id] = (await asyncio.to_thread(self._configuration, row)
                                                              if row else None)
                    self._loaded_at[configuration_id] = reading_at
        return self._configurations[configuration_id]

    async def confirmed(self, configuration_id: str, since: float) -> DeliveryConfiguration | None:
        """The configuration as it was at some moment after `since` (a `time.monotonic()`): for a
        decision that cannot be undone, which a change committed before `since` but not yet
        notified must not miss. What decides whether to send at all is read and compared with our
        copy, which is read again only when that differs. One check serves every caller asking
        about a moment before it: a flood of deliveries costs a check per batch, not per delivery."""
        async with self._locks.setdefault(configuration_id, asyncio.Lock()):
            if self._confirmed_at.get(configuration_id, -MAX_AGE_SECONDS) < since:
                confirming_at = time.monotonic()
                row = await self.pool.fetchrow(
                    "SELECT active, paused, mode, endpoints FROM delivery_configurations WHERE id = $1",
                    configuration_id)
                copy = self._configurations.get(configuration_id)
                as_copied = None if copy is None else (copy.active, copy.paused, copy.mode, copy.endpoints)
                as_stored = None if row is None else (row["active"], row["paused"], row["mode"],
                                                      _json(row["endpoints"]))
                if as_stored != as_copied:
                    self.forget(configuration_id)  # read again, after `since`, just below
                self._confirmed_at[configuration_id] = confirming_at
        return await self.get(configuration_id)

    def _configuration(self, row) -> DeliveryConfiguration:
        authentication = _json(row["authentication"])
        secrets = decrypt_json(self.secret_key, row["secrets_encrypted"])
        return DeliveryConfiguration(
            id=row["id"],
            company_id=row["company_id"],
            active=row["active"],
            paused=row["paused"],
            mode=row["mode"],
            endpoints=_json(row["endpoints"]),
            format=row["format"],
            throttle=_json(row["throttle"]),
            authentication=authentication,
            secrets=secrets,
            policy=Policy.of(_json(row["policy"]), self.retry_jitter),
            headers=_extra_headers(authentication, secrets),
            ssl=_tls_context(authentication, secrets),
            signer=self._signer(secrets, row["signing_key"]),
        )

    def _signer(self, secrets: dict, signing_key: str | None) -> Signer | None:
        ed25519 = None
        if signing_key:
            try:
                ed25519 = private_key(decrypt_json(self.secret_key, signing_key)["private_key"])
            except (KeyError, ValueError) as exc:
                log.warning("the company's signing key does not load: %s", exc)
        return Signer.of(secrets, ed25519)

    def forget(self, configuration_id: str) -> None:
        self._loaded_at.pop(configuration_id, None)

    def forget_company(self, company_id: str) -> list[str]:
        """Drop the company's cached configurations (and unknown ids); return the dropped ids."""
        stale = [k for k, t in self._configurations.items() if t is None or t.company_id == company_id]
        for key in stale:
            del self._configurations[key]
            del self._loaded_at[key]
            self._confirmed_at.pop(key, None)
        return stale

    async def read_refresh_token(self, configuration: DeliveryConfiguration) -> None:
        """Before a refresh, the refresh token as stored now: another replica may have rotated it
        since this copy was loaded (a configuration moves between replicas with its partition),
        and the token it replaced is refused, or revokes the new one at servers that watch reuse."""
        async with self.pool.acquire() as connection:
            token = (await self._stored_secrets(connection, configuration.id)).get("refresh_token")
        if token:
            configuration.secrets["refresh_token"] = token

    async def store_refresh_token(self, configuration: DeliveryConfiguration, refresh_token: str) -> None:
        """The token server rotated the refresh token: keep the new one, or the next refresh fails."""
        configuration.secrets["refresh_token"] = refresh_token
        # Written into what is stored now, not our cached copy: a signing secret rotated (or any
        # secret changed) since this copy was loaded must not be undone.
        async with self.pool.acquire() as connection, connection.transaction():
            secrets = {**await self._stored_secrets(connection, configuration.id, lock=True),
                       "refresh_token": refresh_token}
            await connection.execute("UPDATE delivery_configurations SET secrets_encrypted = $2 WHERE id = $1",
                                     configuration.id, encrypt_json(self.secret_key, secrets))

    async def _stored_secrets(self, connection, configuration_id: str, lock: bool = False) -> dict:
        """The configuration's secrets as stored now ({} when it is gone)."""
        stored = await connection.fetchval("SELECT secrets_encrypted FROM delivery_configurations WHERE id = $1"
                                           + (" FOR UPDATE" if lock else ""), configuration_id)
        return decrypt_json(self.secret_key, stored) if stored else {}


def _extra_headers(authentication: dict, secrets: dict) -> dict | None:
    headers = dict(secrets.get("headers") or {})
    if authentication.get("type") == "api_key":
        headers[authentication["header_name"]] = secrets.get("api_key", "")
    return headers or None


def _tls_context(authentication: dict, secrets: dict) -> ssl.SSLContext | None:
    """Built once per version of the material (shared/tls.py caches it by digest)."""
    ca_bundle = secrets.get("ca_bundle") or secrets.get("policy_ca_bundle")
    mutual = authentication.get("type") == "mtls"
    if not (mutual or ca_bundle):
        return None
    try:
        return tls.client_context(secrets.get("certificate") if mutual else None,
                                  secrets.get("private_key") if mutual else None, ca_bundle)
    except (ssl.SSLError, ValueError, OSError) as exc:  # the api checked it; this is a later surprise
        log.warning("TLS material of a delivery configuration does not load: %s", exc)
        return None


def _json(value):
    return orjson.loads(value) if isinstance(value, str | bytes) else value
