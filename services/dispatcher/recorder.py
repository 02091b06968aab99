"""Writes attempts and delivery states in batches: one COPY and one UPDATE per flush instead
of two statements per delivery. `record()` returns once the row is durable, which is when the
worker may let the Kafka offset move past it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from functools import partial

import asyncpg
import orjson

from services.dispatcher.health import UPSERT_HEALTH, health_rows
from services.dispatcher.sender import Attempt
from shared.db import columns
from shared.deadletter import is_unavailable, isolate_failures, retry_while_unavailable, set_aside
from shared.statuses import DeliveryStatus

log = logging.getLogger(__name__)

# Attempts go in with a binary COPY: asyncpg encodes rows for it ~2x cheaper than the arrays of
# an `unnest` INSERT (which it inspects element by element), and PostgreSQL spends no more.
ATTEMPT_COLUMNS = ("delivery_id", "company_id", "event_id", "endpoint_url", "started_at", "duration_ms",
                   "http_status", "error", "outcome", "response_excerpt", "policy")

# A delivery someone marked `handled` meanwhile stays handled.
UPDATE_DELIVERIES = f"""
UPDATE deliveries AS d SET
    status = u.status,
    attempt_count = u.attempt_count,
    next_attempt_at = u.next_attempt_at,
    succeeded_endpoints = string_to_array(u.succeeded, ','),
    last_error = COALESCE(u.last_error,
                          CASE WHEN u.status = '{DeliveryStatus.DELIVERED}' THEN NULL ELSE d.last_error END),
    last_attempt_at = COALESCE(u.last_attempt_at, d.last_attempt_at),
    delivered_at = COALESCE(u.delivered_at, d.delivered_at),
    updated_at = now()
FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::text[], $6::text[], $7::timestamptz[],
            $8::timestamptz[]) AS u(id, status, attempt_count, next_attempt_at, succeeded, last_error,
                                    last_attempt_at, delivered_at)
WHERE d.id = u.id AND d.status <> '{DeliveryStatus.HANDLED}'
"""


@dataclass(slots=True)
class DeliveryState:
    delivery_id: str
    company_id: str
    delivery_configuration_id: str
    event_id: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    succeeded_endpoints: list[str]
    last_error: str | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None


MARK_UNRECORDABLE = f"""
UPDATE deliveries SET status = '{DeliveryStatus.FAILED}', next_attempt_at = NULL, updated_at = now(),
       last_error = 'the result of this delivery could not be stored; an operator has it as a dead letter'
WHERE id = $1 AND status <> '{DeliveryStatus.HANDLED}'
"""

# Only what is waiting to be sent: a duplicate message of a delivery already settled changes nothing.
HOLD = f"""
UPDATE deliveries SET status = '{DeliveryStatus.HELD}', next_attempt_at = NULL, updated_at = now()
WHERE id = $1 AND status IN ('{DeliveryStatus.QUEUED}', '{DeliveryStatus.PENDING_RETRY}')
"""

DUE_NOW = f"""
UPDATE deliveries SET next_attempt_at = now(), updated_at = now() WHERE id = $1 AND status <> '{DeliveryStatus.HANDLED}'
"""

RECENT_SENDS = """
SELECT extract(epoch FROM now() - started_at) - duration_ms / 1000.0
FROM delivery_attempts
WHERE company_id = $1 AND endpoint_url = ANY($2::text[]) AND started_at > now() - make_interval(secs => $3)
  AND duration_ms > 0  -- it was sent (a timeout may still have reached the endpoint)
ORDER BY started_at DESC
LIMIT $4
"""


class Recorder:
    def __init__(self, pool: asyncpg.Pool, max_batch: int = 1000, interval: float = 0.02):
        self.pool = pool
        self.max_batch = max_batch
        self.interval = interval
        self._pending: list[tuple[DeliveryState, list[Attempt], asyncio.Future]] = []
        self._wakeup = asyncio.Event()

    async def record(self, state: DeliveryState, attempts: list[Attempt]) -> None:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((state, attempts, future))
        if len(self._pending) >= self.max_batch:
            self._wakeup.set()
        await future

    async def hold(self, delivery_id: str, configuration_id: str) -> bool:
        """Hold a delivery of a paused configuration; False (and the delivery is due again at
        once) when the configuration is no longer paused. The configuration row is read FOR
        SHARE: a resume updates that row first and then releases the held deliveries in the same
        transaction, so it either waits for this hold and releases it too, or has committed
        already and this delivery is not held at all."""
        async with self.pool.acquire() as connection, connection.transaction():
            paused = await connection.fetchval(
                "SELECT paused FROM delivery_configurations WHERE id = $1 FOR SHARE", configuration_id)
            await connection.execute(HOLD if paused else DUE_NOW, delivery_id)
        return bool(paused)

    async def recent_sends(self, company_id: str, urls: list[str], within_seconds: float, limit: int) -> list[float]:
        """How long ago (seconds) each of the last `limit` requests to these URLs was answered,
        within the last `within_seconds` (index ix_attempts_endpoint_health)."""
        rows = await self.pool.fetch(RECENT_SENDS, company_id, urls, within_seconds, limit)
        return [float(row[0]) for row in rows]

    async def run(self, stopping: asyncio.Event) -> None:
        while not (stopping.is_set() and not self._pending):
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.interval)
            except TimeoutError:
                pass
            self._wakeup.clear()
            if self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                await self._flush_until_done(batch)

    async def _flush_until_done(self, batch) -> None:
        # Never drop a result: the offsets behind it are not committed until it is written, so an
        # outage is waited out.
        await retry_while_unavailable("dispatcher-recorder", partial(isolate_failures, batch, self._flush,
                                                                     self._write_alone))
        for _, _, future in batch:
            if not future.done():
                future.set_result(None)

    async def _write_alone(self, pending, error: Exception) -> None:
        """A result PostgreSQL refused on its own (the others of its batch are written): written
        again without the endpoint's words, and set aside if even that fails."""
        state, attempts, _ = pending
        log.warning("delivery %s: result refused (%s: %s); storing it without response text",
                    state.delivery_id, type(error).__name__, error)
        plain = [replace(attempt, response_excerpt=None, error=_ascii(attempt.error)) for attempt in attempts]
        try:
            await self._flush([(replace(state, last_error=_ascii(state.last_error)), plain, None)])
        except Exception as again:
            if is_unavailable(again):
                raise
            result = {"state": asdict(state), "attempts": [asdict(attempt) for attempt in attempts]}
            await set_aside(self.pool, service="dispatcher", source=f"delivery:{state.delivery_id}",
                            company_id=state.company_id, reason=f"{type(again).__name__}: {again}",
                            payload=orjson.dumps(result, default=str))
            # Not left `queued` for ever: the company sees it failed, and can republish it.
            await self.pool.execute(MARK_UNRECORDABLE, state.delivery_id)

    async def _flush(self, batch) -> None:
        attempts = []
        updates = [[] for _ in range(8)]
        for state, state_attempts, _ in batch:
            for attempt in state_attempts:
                attempts.append((
                    state.delivery_id, state.company_id, state.event_id, attempt.url, attempt.started_at,
                    attempt.duration_ms, attempt.http_status, _storable(attempt.error), attempt.outcome,
                    _storable(attempt.response_excerpt),
                    orjson.dumps(attempt.policy).decode() if attempt.policy is not None else None,
                ))
            for column, value in zip(updates, (
                state.delivery_id, state.status, state.attempt_count, state.next_attempt_at,
                ",".join(state.succeeded_endpoints), _storable(state.last_error), state.last_attempt_at,
                state.delivered_at,
            ), strict=True):
                column.append(value)
        health = health_rows((state.delivery_configuration_id, state.company_id, state_attempts)
                             for state, state_attempts, _ in batch)
        async with self.pool.acquire() as connection, connection.transaction():
            if attempts:
                await connection.copy_records_to_table("delivery_attempts", records=attempts, columns=ATTEMPT_COLUMNS)
            await connection.execute(UPDATE_DELIVERIES, *updates)
            if health:
                await connection.execute(UPSERT_HEALTH, *columns(health, 9))


def _storable(text: str | None) -> str | None:
    """What an endpoint answered, as PostgreSQL text accepts it: NUL is the one character it
    refuses (invalid UTF-8 was already replaced when the excerpt was decoded)."""
    return text.replace("\x00", "\ufffd") if text and "\x00" in text else text


def _ascii(text: str | None) -> str | None:
    return text.encode("ascii", "replace").decode() if text else text
