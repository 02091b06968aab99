"""The claims of concurrent ingest requests, sent to PostgreSQL together.

Every request makes one claim before anything is produced: its source checked and its ids
claimed (`claim_ingest_ids`, migrations 0018 and 0020). One call each cost a single-event
request about a fifth of ingest's CPU and 0.26-0.37 ms of PostgreSQL's (by the hour), mostly
the round trip and its transaction. So one call is under way at a time, and the claims that
arrive meanwhile go in the next, together, up to a bound: the group is as large as the load
makes it, one request when ingest is quiet, and waits for nothing but the call before it.

A group's outcome is each request's own: the function answers each what its own call would. A
group the database refuses for what it holds is sent again one request at a time, so a failure
is answered to the request it belongs to and never to the others of its group; an outage (or a
call past CLAIM_TIMEOUT_SECONDS) fails the group at once, as it would fail each of its calls."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import orjson
from prometheus_client import Histogram

from shared.deadletter import is_unavailable

CLAIM_TOGETHER = ("SELECT request_index, event_index, reason "
                  "FROM claim_ingest_ids_together($1::jsonb, $2::text[], $3::text[], $4::bytea[])")

# Bounds how long one call can hold up every claim of a replica (a lock held elsewhere, a stuck
# connection): far beyond what a group of the largest size takes.
CLAIM_TIMEOUT_SECONDS = 5.0

GROUP_SIZE = Histogram("em_ingest_claim_group_requests", "Requests whose claims went to PostgreSQL in one call",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))


@dataclass(frozen=True, slots=True)
class Claim:
    """What one request claims: its token's digest, the source it was validated against (its
    topics and companies as stored), and its ids, each with its company key ('' for a broadcast)
    and its content's digest."""
    token_digest: str
    source_id: str
    topics: list[str]
    companies: list[str] | None
    company_keys: list[str]
    ids: list[str]
    digests: list[bytes]


# A refusal: the index of the request's event whose id is taken and why, or (None, 'source
# changed') when the token no longer names the source as it was.
Refusal = tuple[int | None, str]


def arguments(claims: list[Claim]) -> tuple:
    """The parameters of CLAIM_TOGETHER for `claims`, in order."""
    requests = [{"token": c.token_digest, "source": c.source_id, "topics": c.topics, "companies": c.companies,
                 "ids": len(c.ids)} for c in claims]
    return (orjson.dumps(requests).decode(), [k for c in claims for k in c.company_keys],
            [i for c in claims for i in c.ids], [d for c in claims for d in c.digests])


class Claims:
    def __init__(self, pool: asyncpg.Pool, max_requests: int = 128, max_ids: int = 5_000):
        self.pool = pool
        self.max_requests = max_requests
        self.max_ids = max_ids  # passed only by a request alone in its group (a batch holds up to 1000 ids)
        self._waiting: list[tuple[Claim, asyncio.Future]] = []
        self._sending: asyncio.Task | None = None

    async def claim(self, claim: Claim) -> list[Refusal]:
        """The request's refusals; none when every id is now its own. Cancelled (the client went
        away) before its group was sent, nothing is claimed; after, the claim may have been made."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((claim, future))
        if self._sending is None:
            self._sending = asyncio.create_task(self._send_while_waiting())
        return await future

    async def _send_while_waiting(self) -> None:
        try:
            while group := self._next_group():
                await self._send(group)
        finally:
            self._sending = None

    def _next_group(self) -> list[tuple[Claim, asyncio.Future]]:
        self._waiting = [(claim, future) for claim, future in self._waiting if not future.done()]
        taken, ids = 0, 0
        for claim, _ in self._waiting:
            if taken and (taken == self.max_requests or ids + len(claim.ids) > self.max_ids):
                break
            taken, ids = taken + 1, ids + len(claim.ids)
        group, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return group

    async def _send(self, group: list[tuple[Claim, asyncio.Future]]) -> None:
        GROUP_SIZE.observe(len(group))
        try:
            rows = await self.pool.fetch(CLAIM_TOGETHER, *arguments([claim for claim, _ in group]),
                                         timeout=CLAIM_TIMEOUT_SECONDS)
            refusals: list[list[Refusal]] = [[] for _ in group]
            for request_index, event_index, reason in rows:
                refusals[request_index].append((event_index, reason))
        except asyncio.CancelledError:
            for _, future in group:
                future.cancel()
            raise
        except Exception as exc:
            if len(group) > 1 and not is_unavailable(exc):  # whose it is, each request alone tells
                await asyncio.gather(*(self._send([one]) for one in group))
            else:
                for _, future in group:
                    _settle(future, exception=exc)
            return
        for (_, future), refused in zip(group, refusals, strict=True):
            _settle(future, result=refused)


def _settle(future: asyncio.Future, result=None, exception: BaseException | None = None) -> None:
    if future.done():  # its request was cancelled
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
