"""Rate limits shared by every api and ingest replica (issue 16): per company API key, per source
token, and per client address for failed authentication.

Shared state in PostgreSQL, not in the broker's partitioning: a request reaches whichever replica
the load balancer picks, so a limit held in one process (or one partition's consumer) would let N
replicas allow N times the limit; PostgreSQL is already on every request's path and its row locks
serialise concurrent takes exactly, across replicas, with no new infrastructure.

Each limited subject has one token bucket row in `rate_limit_buckets` (UNLOGGED: no WAL, so cheap
to update; a crash empties it, which only forgets recent counts). A bucket holds up to `capacity`
tokens (the limit per minute) and refills at capacity per `EM_RATE_LIMIT_WINDOW_SECONDS`, so a
client may burst to its limit and then goes at the steady rate, with no doubled burst at a window
boundary as fixed windows allow. A take is one function call, one round trip
(`take_rate_limit_tokens`, migration 0018): it refills, takes only whole tokens (a refused request
takes nothing, so a client that keeps hammering still gets through at the steady rate) and reads
the company's own limit too.

A busy subject's bucket is one hot row, and a take on every request cost a round trip on every
request, all serialised on that row's lock. So a take asks for a lease of up to a tenth of a second
of the steady rate (at least one token; just one for a limit under 600 a minute with the default
one-minute window), which this process then spends without a round trip; one take per subject is
in flight at a time, and concurrent requests share what it brings. The limit still holds exactly
across replicas, since every token spent came out of the shared bucket; what a lease costs is that
a replica may hold a few tokens another replica's request could have used, for at most
LEASE_SECONDS, after which they lapse.

A refusal is also remembered in this process until the bucket would have a token again: while it
lasts, requests of that subject are refused without touching the database, so a client past its
limit costs nothing more (and a limit raised meanwhile applies once that Retry-After lapses).

Failed authentication is limited per client address the same way, but the shared bucket is only
touched when a presented credential is unknown; the address's budget is checked BEFORE the
credential lookup from the refusals this process remembers, which costs no round trip, so neither
valid requests pay for it nor can garbage keys make the database look up more than the budget
(plus one lookup per replica each time a refusal lapses).

Two things keep a shared address from locking out every tenant's valid keys. Behind an ingress the
client address is the one the ingress forwards (`EM_FORWARDED_ALLOW_IPS` names the proxies whose
X-Forwarded-For is believed); and a credential this process recently verified as valid is never
refused by its address's spent budget (it is still looked up each time, so a revoked one fails
at once and spends the budget), so garbage from the same address (or the same NAT, or an
ingress left untrusted) cannot refuse a key already in use. IPv6 clients are grouped by /64, the
block one subscriber usually gets, so rotating through its addresses buys no more budget."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from shared.errors import Forbidden, TooManyRequests, Unauthorized
from shared.security import digest
from shared.settings import Settings

# Refill the subject's bucket and take up to $5 tokens (migration 0018): what was taken (0: refused),
# the capacity (the company's own limit or the default) and the tokens there were, refilled to now,
# before the take: what a refusal's Retry-After is computed from.
TAKE = "SELECT taken, capacity, available FROM take_rate_limit_tokens($1, $2, $3, $4, $5)"

# A take asks for this many tokens at once (the function grants at most a tenth of a second of the
# steady rate, and at least one): the process spends them without asking again until they run out
# or, unspent, lapse after LEASE_SECONDS.
LEASE_TOKENS = 100
LEASE_SECONDS = 1.0

# Refusals remembered per process; past this many, the lapsed ones are dropped (and, if a flood
# of addresses keeps it full, the oldest), so memory stays bounded.
REMEMBERED = 100_000

# Digests of credentials this process verified as valid, each for this long after its last
# verification, at most this many (least recently verified dropped first): those skip their
# address's failed-authentication refusal.
VERIFIED = 10_000
VERIFIED_SECONDS = 600.0


@dataclass(slots=True)
class Lease:
    """Tokens this process took from a shared bucket and has not spent yet."""
    left: int
    limit: int
    until: float  # monotonic


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    retry_after: float  # seconds until one request would be allowed; 0 when allowed


class RateLimiter:
    def __init__(self, pool: asyncpg.Pool, window_seconds: float):
        self.pool = pool
        self.window = window_seconds
        # subject -> (refused until, on this process's monotonic clock; the limit it was refused at)
        self._refused_until: dict[str, tuple[float, int]] = {}
        self._verified: OrderedDict[str, float] = OrderedDict()
        self._leases: dict[str, Lease] = {}
        self._taking: dict[str, asyncio.Future] = {}  # subject -> its take in flight

    async def take(self, subject: str, default_per_minute: int, company_id: str | None = None) -> Verdict:
        """One request of `subject`: allowed (a token taken) or refused, for every replica alike."""
        while True:
            remembered = self._remembered(subject)
            if remembered:
                return Verdict(False, self._refused_until[subject][1], remembered)
            if (spent := self._spend_leased(subject)) is not None:
                return spent
            taking = self._taking.get(subject)
            if taking is None:
                break
            # One take per subject at a time: concurrent requests that found the lease empty wait
            # for it and share what it brings, instead of each taking a lease of its own from the
            # shared bucket (which left other replicas' requests refused under the limit).
            await asyncio.shield(taking)
        self._taking[subject] = taking = asyncio.get_running_loop().create_future()
        try:
            return await self._take_from_bucket(subject, default_per_minute, company_id)
        finally:
            del self._taking[subject]
            taking.set_result(None)

    async def _take_from_bucket(self, subject: str, default_per_minute: int, company_id: str | None) -> Verdict:
        row = await self.pool.fetchrow(TAKE, subject, company_id, default_per_minute, self.window, LEASE_TOKENS)
        capacity = int(row["capacity"])
        if row["taken"] >= 1:
            self._lease(subject, row["taken"] - 1, capacity)
            return Verdict(True, capacity, 0.0)
        available = row["available"] if row["available"] is not None else 0.0
        wait = self.window if capacity < 1 else max(0.0, (1 - available) * self.window / capacity)
        self._remember(subject, wait, capacity)
        return Verdict(False, capacity, wait)

    def _spend_leased(self, subject: str) -> Verdict | None:
        lease = self._leases.get(subject)
        if lease is None or lease.left < 1:
            return None
        if lease.until <= time.monotonic():
            del self._leases[subject]
            return None
        lease.left -= 1
        return Verdict(True, lease.limit, 0.0)

    def _lease(self, subject: str, tokens: int, limit: int) -> None:
        """Keep `tokens` more of `subject` to spend here (a take is made only once the last lease
        is spent or lapsed, so it replaces that one)."""
        if tokens < 1:
            return
        now = time.monotonic()
        self._leases = _with_room(self._leases, lambda lease: lease.until > now and lease.left)
        self._leases[subject] = Lease(tokens, limit, now + LEASE_SECONDS)

    def refused(self, subject: str) -> float:
        """Seconds this process still refuses `subject` for (0: not refused), without the database."""
        return self._remembered(subject)

    def recently_verified(self, credential_digest: str) -> bool:
        verified_at = self._verified.get(credential_digest)
        return verified_at is not None and time.monotonic() - verified_at < VERIFIED_SECONDS

    def verified(self, credential_digest: str) -> None:
        self._verified[credential_digest] = time.monotonic()
        self._verified.move_to_end(credential_digest)
        while len(self._verified) > VERIFIED:
            self._verified.popitem(last=False)

    def unverified(self, credential_digest: str) -> None:
        self._verified.pop(credential_digest, None)

    def _remembered(self, subject: str) -> float:
        refused = self._refused_until.get(subject)
        if refused is None:
            return 0.0
        left = refused[0] - time.monotonic()
        if left <= 0:
            self._refused_until.pop(subject, None)
            return 0.0
        return left

    def _remember(self, subject: str, seconds: float, limit: int) -> None:
        now = time.monotonic()
        self._refused_until = _with_room(self._refused_until, lambda refused: refused[0] > now)
        self._refused_until[subject] = (now + seconds, limit)


def _with_room(entries: dict, live) -> dict:
    """`entries`, with room for one more within REMEMBERED: once full, only the `live` ones are
    kept, and if those still fill it, the oldest go first."""
    if len(entries) < REMEMBERED:
        return entries
    entries = {key: value for key, value in entries.items() if live(value)}
    while len(entries) >= REMEMBERED:
        entries.pop(next(iter(entries)))
    return entries


def too_many(what: str, retry_after: float) -> TooManyRequests:
    seconds = max(1, math.ceil(retry_after))
    return TooManyRequests(f"{what}; retry after {seconds} s", headers={"Retry-After": str(seconds)})


# --- the hooks the api's and ingest's authentication call ------------------------------------

async def start(state, runtime) -> RateLimiter:
    """The process's limiter, made at service start (api, ingest) on `state` (app.state), with a
    small pool of its own so a take is one round trip and commits at once, apart from the
    request's transaction; the Runtime closes the pool on shutdown and `/readyz` checks it."""
    settings = runtime.settings
    pool = await runtime.database_pool(settings.rate_limit_pool_size, check="rate_limits")
    state.rate_limiter = RateLimiter(pool, settings.rate_limit_window_seconds)
    return state.rate_limiter


def address_subject(address: str | None) -> str:
    """The failed-authentication bucket of a client address: its own for IPv4, its /64 for IPv6."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return f"address:{address or 'unknown'}"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return f"address:{parsed.ipv4_mapped}"
        return f"address:{ipaddress.IPv6Network((parsed, 64), strict=False)}"
    return f"address:{parsed}"


async def check_address(state, settings: Settings, address: str | None) -> None:
    """Before a credential lookup: 429 while this address is past its failed-authentication budget."""
    wait = state.rate_limiter.refused(address_subject(address))
    if wait:
        raise too_many("too many failed authentications from this address", wait)


async def failed_authentication(state, settings: Settings, address: str | None) -> None:
    """After a presented credential was not found: spend one of the address's budget; 429 once it is
    spent (the caller answers 401 otherwise)."""
    verdict = await state.rate_limiter.take(address_subject(address),
                                                             settings.auth_failure_limit_per_minute)
    if not verdict.allowed:
        raise too_many("too many failed authentications from this address", verdict.retry_after)


Found = TypeVar("Found")


async def authenticate(state, settings: Settings, address: str | None, credential: str,
                       lookup: Callable[[], Awaitable[Found | None]]) -> Found:
    """A presented credential's lookup, guarded: 429 before it while the address is past its
    failed-authentication budget (unless this process recently verified this very credential);
    an unknown credential (`lookup` answers None or raises Unauthorized) spends that budget, then
    401 (or 429 once it is spent); so does a refused one (`lookup` raises Forbidden: 403)."""
    limiter = state.rate_limiter
    credential_digest = digest(credential)
    if not limiter.recently_verified(credential_digest):
        await check_address(state, settings, address)
    refusal: Unauthorized | Forbidden = Unauthorized()
    try:
        found = await lookup()
    except (Unauthorized, Forbidden) as refused:
        # A disabled application's key or disabled source's token (403) costs a lookup each time
        # too: it spends the budget like an unknown one. Its own words (which field, why) are kept.
        found, refusal = None, refused
    if found is None:
        limiter.unverified(credential_digest)
        await failed_authentication(state, settings, address)
        raise refusal
    limiter.verified(credential_digest)
    return found


async def limit(state, settings: Settings, subject: str, default_per_minute: int,
                company_id: str | None = None) -> Verdict:
    """One request of an authenticated caller (`key:<id>`, `source:<id>`); 429 past its limit."""
    verdict = await state.rate_limiter.take(subject, default_per_minute, company_id)
    if not verdict.allowed:
        raise too_many(f"rate limit of {verdict.limit} requests per minute reached", verdict.retry_after)
    return verdict


# The 429 each rate-limited operation may answer, for the OpenAPI documents.
TOO_MANY = {
    "description": "Rate limit reached (this credential's requests per minute, or this address's failed "
                   "authentications); retry after `Retry-After` seconds",
    "headers": {"Retry-After": {"description": "Seconds to wait before the next request",
                                "schema": {"type": "integer"}}},
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def document_limits(openapi: dict) -> dict:
    """The api's OpenAPI with the 429 on every company operation (those `document_scopes` in
    services/api/deps.py marked with their scope: each is limited per key)."""
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "x-required-scope" in operation:
                operation.setdefault("responses", {})["429"] = TOO_MANY
    return openapi
