"""Credentials for the customer's endpoint: Basic, or an OAuth 2.0 access token fetched with
authlib (the client authenticated by `client_secret_basic` or `client_secret_post`, with
`audience` / `resource` when configured). An API key and mutual TLS need no work per request:
services/dispatcher/configs.py turns them into a header and an SSL context once.
Tokens are cached per delivery configuration until shortly before they expire, and
one lock per configuration makes concurrent deliveries share a single token request (per
replica: a configuration whose refresh token rotates is sent by one replica only,
shared/messages.py PINNED_SQL)."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from services.dispatcher.configs import ConfigurationCache, DeliveryConfiguration
from shared.netguard import EgressGuard, UrlRefused

EXPIRY_MARGIN_SECONDS = 30.0
DEFAULT_TOKEN_SECONDS = 300.0
MAX_TOKEN_SECONDS = 86_400.0  # a token server's "1e30" must not pin a token for ever
# RFC 6750 b64token: what may follow "Bearer " in a header (no spaces, no control characters).
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class TokenError(Exception):
    """Getting a token failed. `retryable` is False when only a configuration change can help."""

    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@dataclass(slots=True)
class CachedToken:
    access_token: str
    expires_at: float


class Credentials:
    def __init__(self, configurations: ConfigurationCache, guard: EgressGuard, timeout: float):
        self.configurations = configurations
        self.guard = guard
        self.timeout = timeout
        self._tokens: dict[str, CachedToken] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.token_requests = 0  # for metrics and tests: how many times we asked a token server

    async def authorization(self, configuration: DeliveryConfiguration) -> str | None:
        kind = configuration.authentication.get("type", "none")
        if kind == "basic":
            raw = f"{configuration.authentication['username']}:{configuration.secrets.get('password', '')}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if kind == "oauth2":
            return "Bearer " + await self._access_token(configuration)
        return None

    def forget(self, configuration: DeliveryConfiguration, authorization: str | None) -> None:
        """The endpoint refused this token (401): the next call fetches a new one."""
        cached = self._tokens.get(configuration.id)
        if cached and authorization == "Bearer " + cached.access_token:
            del self._tokens[configuration.id]

    def forget_all(self, configuration_ids) -> None:
        for configuration_id in configuration_ids:
            self._tokens.pop(configuration_id, None)

    async def _access_token(self, configuration: DeliveryConfiguration) -> str:
        cached = self._tokens.get(configuration.id)
        if cached and cached.expires_at > time.time():
            return cached.access_token
        lock = self._locks.setdefault(configuration.id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(configuration.id)  # another delivery may have fetched it meanwhile
            if cached and cached.expires_at > time.time():
                return cached.access_token
            token = await self._fetch(configuration)
            if not _usable_token(token.get("access_token")):
                raise TokenError("the token endpoint answered without a usable access_token", retryable=False)
            try:
                lifetime = min(float(token.get("expires_in") or DEFAULT_TOKEN_SECONDS), MAX_TOKEN_SECONDS)
            except (TypeError, ValueError):
                lifetime = DEFAULT_TOKEN_SECONDS
            cached = CachedToken(token["access_token"], time.time() + max(lifetime - EXPIRY_MARGIN_SECONDS,
                                                                          lifetime / 2))
            self._tokens[configuration.id] = cached
            return cached.access_token

    async def _fetch(self, configuration: DeliveryConfiguration) -> dict:
        settings = configuration.authentication
        grant = settings["grant_type"]
        _check_grant_usable(self.guard, settings)
        if grant == "refresh_token":
            await self.configurations.read_refresh_token(configuration)
        self.token_requests += 1
        client = AsyncOAuth2Client(
            client_id=settings["client_id"],
            client_secret=configuration.secrets.get("client_secret"),
            scope=settings.get("scope"),
            token_endpoint_auth_method=settings.get("client_auth_method") or "client_secret_basic",
            timeout=self.timeout,
            follow_redirects=False,
            transport=self.guard.httpx_transport(),  # connects only to vetted addresses
        )
        try:
            async with client:
                token = await _request_token(client, grant, settings, configuration.secrets)
        except UrlRefused as exc:  # an address (or plain http) the guard refused while connecting
            raise TokenError(f"token URL refused: {exc}", retryable=False) from None
        except OAuthError as exc:
            raise TokenError(f"token endpoint refused: {exc.error}", retryable=False) from None
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            raise TokenError(f"token endpoint answered {status}", retryable=status >= 500 or status == 429) from None
        except (httpx.HTTPError, ValueError) as exc:
            raise TokenError(f"token endpoint unreachable: {type(exc).__name__}", retryable=True) from None
        if not token.get("access_token"):
            raise TokenError("token endpoint answered without an access_token", retryable=False)
        rotated = token.get("refresh_token")
        if grant == "refresh_token" and rotated and rotated != configuration.secrets.get("refresh_token"):
            await self.configurations.store_refresh_token(configuration, rotated)
        return token


def _check_grant_usable(guard: EgressGuard, settings: dict) -> None:
    """Refuse before any request what can only fail: a refused token URL, an expired refresh token."""
    try:
        guard.check_url(settings["token_url"])
    except UrlRefused as exc:
        raise TokenError(f"token URL refused: {exc}", retryable=False) from None
    expires = settings.get("refresh_token_expires_at")
    if settings["grant_type"] == "refresh_token" and expires and datetime.fromisoformat(expires) <= datetime.now(UTC):
        raise TokenError(f"the stored refresh token timed out at {expires}; set a new one", retryable=False)


async def _request_token(client: AsyncOAuth2Client, grant: str, settings: dict, secrets: dict) -> dict:
    token_url = settings["token_url"]
    # The resource the token is for, where the token server wants it said (RFC 8707, Auth0 and the like).
    extra = {key: settings[key] for key in ("audience", "resource") if settings.get(key)}
    if grant == "refresh_token":
        return await client.refresh_token(token_url, refresh_token=secrets.get("refresh_token"), **extra)
    if grant == "password":
        return await client.fetch_token(token_url, grant_type="password", username=settings.get("username"),
                                        password=secrets.get("password"), **extra)
    return await client.fetch_token(token_url, grant_type="client_credentials", **extra)


def _usable_token(value) -> bool:
    return isinstance(value, str) and len(value) <= 8192 and _B64TOKEN.fullmatch(value) is not None
