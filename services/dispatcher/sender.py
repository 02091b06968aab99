"""One HTTP attempt against one endpoint, with aiohttp (measured several times faster than
httpx on this path; see the benchmark). Redirects are not followed: a 3xx is a failure.
The session connects only to addresses the EgressGuard vetted (shared/netguard.py)."""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from services.dispatcher.retry import is_retryable_status, parse_retry_after
from shared.netguard import EgressGuard, UrlRefused, refusal_of
from shared.statuses import AttemptOutcome

EXCERPT_BYTES = 512


@dataclass(slots=True)
class Attempt:
    endpoint_id: str
    url: str
    started_at: datetime
    duration_ms: float
    http_status: int | None
    error: str | None
    outcome: AttemptOutcome
    response_excerpt: str | None = None
    retry_after: float | None = None
    failure: str | None = None  # "timeout" or "connection" when there was no HTTP answer
    policy: dict | None = None  # the effective policy, recorded for tracking (services/dispatcher/policy.py)

    @property
    def succeeded(self) -> bool:
        return self.outcome == AttemptOutcome.SUCCESS


def failed_attempt(endpoint: dict, error: str, retryable: bool) -> Attempt:
    """An attempt that never reached the endpoint (token or URL problem)."""
    return Attempt(endpoint["id"], endpoint["url"], datetime.now(UTC), 0.0, None, error,
                   AttemptOutcome.RETRYABLE if retryable else AttemptOutcome.FAILED)


def delivery_session(guard: EgressGuard) -> aiohttp.ClientSession:
    """The dispatcher's one HTTP session. No connection limit: the worker's semaphore and the
    throttle buckets bound concurrency, and a shared pool limit would make a throttled request
    queue behind the unthrottled ones. Resolved (and vetted) addresses are cached for 60 s."""
    return guard.aiohttp_session(limit=0, ttl_dns_cache=60)


_timeouts: dict[float, aiohttp.ClientTimeout] = {}


async def post(session: aiohttp.ClientSession, endpoint: dict, body: bytes, headers: dict,
               timeout_seconds: float, method: str = "POST", ssl: ssl_module.SSLContext | bool = True) -> Attempt:
    """One request (POST unless the configuration's policy says PUT); `ssl` is the
    configuration's own verifying context (mutual TLS, a private CA), or the session's."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    try:
        async with session.request(method, endpoint["url"], data=body, headers=headers, allow_redirects=False,
                                   timeout=_timeout(timeout_seconds), ssl=ssl) as response:
            excerpt = (await response.content.read(EXCERPT_BYTES)).decode("utf-8", "replace")
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
    except TimeoutError:
        return Attempt(endpoint["id"], endpoint["url"], started_at, _ms(started), None,
                       f"timeout after {timeout_seconds:g}s", AttemptOutcome.RETRYABLE, failure="timeout")
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError, UrlRefused) as exc:
        # A refused address or URL stays refused: only a configuration change can help. A name
        # that does not resolve, or a connection that fails, may well work next time.
        refusal = refusal_of(exc) or (exc if isinstance(exc, aiohttp.InvalidURL) else None)
        if refusal is not None:
            return Attempt(endpoint["id"], endpoint["url"], started_at, _ms(started), None,
                           f"endpoint URL refused: {refusal}"[:300], AttemptOutcome.FAILED)
        return Attempt(endpoint["id"], endpoint["url"], started_at, _ms(started), None,
                       f"{type(exc).__name__}: {exc}"[:300], AttemptOutcome.RETRYABLE, failure="connection")
    if 200 <= status < 300:
        outcome, error = AttemptOutcome.SUCCESS, None
    else:
        outcome = AttemptOutcome.RETRYABLE if is_retryable_status(status) else AttemptOutcome.FAILED
        error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    return Attempt(endpoint["id"], endpoint["url"], started_at, _ms(started), status, error, outcome,
                   excerpt or None, retry_after)


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    timeout = _timeouts.get(seconds)
    if timeout is None:
        timeout = _timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
    return timeout


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
