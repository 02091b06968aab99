"""The dispatcher's pipeline for one delivery message:
`prepare` (configuration, throttle lane, endpoints still to do) -> `attempt` each endpoint
(circuit breaker, throttle, credentials, HTTP) -> `settle` (delivered, pending_retry or failed)
-> the recorder writes it -> the offset may move.

Messages are handled concurrently. Capacity is shared fairly: each company's endpoint host has
its own lane (services/dispatcher/lanes.py) holding at most an equal share of the shared slots
among the busy lanes, taken before a shared slot, so a slow endpoint uses its share and no more.
A throttled configuration waits in its own ThrottleBucket. When a bucket's backlog grows past
a couple of seconds' worth, or a lane's past half a minute's, the excess is parked in the
database with a due time instead of holding memory or the partition. A message that cannot be handled is set aside
(shared/deadletter.py), never lost silently, never retried forever."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from prometheus_client import Counter, Histogram

from services.dispatcher.auth import Credentials, TokenError
from services.dispatcher.breaker import Breakers
from services.dispatcher.configs import Target, TargetCache
from services.dispatcher.formats import render, webhook_headers
from services.dispatcher.lanes import EndpointLane, EndpointLanes
from services.dispatcher.offsets import OffsetTracker
from services.dispatcher.recorder import DeliveryState, Recorder
from services.dispatcher.retry import RetrySchedule
from services.dispatcher.sender import Attempt, failed_attempt, post
from services.dispatcher.throttle import ThrottleBucket
from shared.deadletter import kafka_source, retry_while_unavailable, set_aside
from shared.messages import decode, valid_delivery
from shared.netguard import UrlRefused, check_url_syntax

log = logging.getLogger(__name__)

ATTEMPTS = Counter("em_dispatcher_attempts_total", "HTTP attempts", ["outcome"])
ATTEMPT_OUTCOMES = {outcome: ATTEMPTS.labels(outcome) for outcome in ("success", "retryable", "failed")}
DELIVERIES = Counter("em_dispatcher_deliveries_total", "Delivery states recorded (parked ones too)", ["status"])
LATENCY = Histogram("em_dispatcher_request_seconds", "Endpoint response time")

MAX_IN_FLIGHT = 5000
THROTTLE_BACKLOG_SECONDS = 2.0
# A lane parks what arrives once its backlog would take this long to drain at the host's pace
# (a host that has not answered yet is presumed as slow as it has been silent). Long enough that
# a busy but healthy host is never parked (parking costs a database round trip per delivery),
# short enough that a slow host's backlog does not hold offsets and memory for minutes.
LANE_BACKLOG_SECONDS = 30.0
USER_AGENT = "EventManager/1.0 (+webhooks)"


class Dispatcher:
    def __init__(self, settings, targets: TargetCache, credentials: Credentials, recorder: Recorder,
                 http: aiohttp.ClientSession, breakers: Breakers):
        self.settings = settings
        self.consumer: AIOKafkaConsumer | None = None  # set once subscribed (it needs our rebalance listener)
        self.targets = targets
        self.credentials = credentials
        self.recorder = recorder
        self.http = http
        self.breakers = breakers
        self.schedule = RetrySchedule(settings.retry_schedule, settings.retry_jitter)
        self.offsets = OffsetTracker()
        self.buckets: dict[str, ThrottleBucket] = {}
        self.requests = asyncio.Semaphore(settings.dispatcher_concurrency)
        self.lanes = EndpointLanes(settings.dispatcher_concurrency, settings.endpoint_concurrency)
        self._tasks: set[asyncio.Task] = set()

    # --- the consumer loop ----------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        last_commit = time.monotonic()
        while not stopping.is_set():
            if len(self._tasks) >= MAX_IN_FLIGHT:
                await asyncio.sleep(0.01)
            else:
                batches = await self.consumer.getmany(timeout_ms=100, max_records=1000)
                for partition, records in batches.items():
                    for record in records:
                        self.offsets.begin(partition, record.offset)
                        task = asyncio.create_task(self._handle(partition, record.offset, record.value, record.key))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
            if time.monotonic() - last_commit > 0.5:
                await self.commit()
                last_commit = time.monotonic()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        await self.commit()

    async def commit(self, partitions=None) -> None:
        offsets = self.offsets.committable(partitions)
        if offsets:
            await self.consumer.commit(offsets)
            self.offsets.committed(offsets)

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        dispatcher = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                # Let in-flight deliveries of these partitions finish and commit them, so the
                # next owner does not send them again.
                deadline = time.monotonic() + 8
                while dispatcher.offsets.in_flight(revoked) and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                try:
                    await dispatcher.commit(revoked)
                except Exception as exc:
                    log.warning("commit on revoke failed: %s", exc)
                dispatcher.offsets.forget(revoked)

            async def on_partitions_assigned(self, assigned):
                dispatcher.forget_idle_buckets()

        return Listener()

    async def _handle(self, partition, offset: int, raw: bytes, key: bytes | None) -> None:
        message = None
        try:
            message = valid_delivery(decode(raw))
            await retry_while_unavailable("dispatcher", partial(self.deliver, message))
        except Exception as exc:
            # Not an outage (those are waited out above): this message itself cannot be handled.
            reason = f"delivery message at {partition.partition}/{offset} could not be handled: " \
                     f"{type(exc).__name__}: {exc}"
            try:
                await retry_while_unavailable("dispatcher", partial(
                    set_aside, self.recorder.pool, service="dispatcher", source=kafka_source(partition.topic),
                    reason=reason, payload=raw, key=key, company_id=message and message["company_id"]))
                if message is not None:  # the company sees it failed (and may republish it), not queued for ever
                    await self._settle(message, [], "failed", error=f"could not be delivered: {reason}"[:500])
            except Exception:
                log.exception("could not set aside %s", reason)
        finally:
            self.offsets.done(partition, offset)

    # --- one delivery ---------------------------------------------------------------------

    async def deliver(self, message: dict) -> None:
        target = await self.targets.get(message["delivery_configuration_id"])
        if target is None or not target.active or target.mode != "realtime":
            reason = "the delivery configuration was deleted" if target is None else \
                "the delivery configuration is not active"
            await self._settle(message, [], "failed", error=reason)
            return
        bucket = await self._bucket(target)
        if bucket is not None and bucket.waiting >= max(bucket.rate * THROTTLE_BACKLOG_SECONDS, 1):
            # Come back when the queue ahead is half drained, so the bucket never runs dry.
            await self._park(message, bucket.waiting / bucket.rate / 2)
            return
        done = set(message["succeeded_endpoints"])
        endpoints = [e for e in target.endpoints if e["active"] and e["id"] not in done]
        if not endpoints:
            status = "delivered" if done else "failed"
            await self._settle(message, [], status, error=None if done else "no active endpoint")
            return
        backlog = max(_backlog_seconds(self.lanes.of(target.company_id, e["url"])) for e in endpoints)
        if backlog:
            await self._park(message, backlog / 2)
            return
        body, content_type = render(message["event"], target.format)
        if len(endpoints) == 1:  # the common case: no gather, no extra task
            results = [await self.attempt(target, endpoints[0], body, content_type, message["delivery_id"], bucket)]
        else:
            results = await asyncio.gather(*(
                self.attempt(target, endpoint, body, content_type, message["delivery_id"], bucket)
                for endpoint in endpoints
            ))
        attempts = [a for result in results for a in result if isinstance(a, Attempt)]
        held_until = [r for result in results for r in result if isinstance(r, float)]
        await self._conclude(message, endpoints, attempts, held_until, done)

    async def attempt(self, target: Target, endpoint: dict, body: bytes, content_type: str, delivery_id: str,
                      bucket: ThrottleBucket | None) -> list[Attempt | float]:
        """Attempts made against one endpoint (two after a 401 with a refreshed token), or the
        time its open circuit breaker holds the delivery until."""
        breaker = self.breakers.of(endpoint["id"])
        if not breaker.allows():
            return [breaker.open_until]
        try:
            # Syntax and https only (cached, no DNS): the addresses are vetted on each connection.
            check_url_syntax(endpoint["url"], self.settings.require_https)
        except UrlRefused as exc:
            breaker.record(True)  # not the endpoint's fault; release a half-open probe
            return [failed_attempt(endpoint, f"endpoint URL refused: {exc}", retryable=False)]
        attempts = []
        for _ in range(2):
            try:
                authorization = await self.credentials.authorization(target)
            except TokenError as exc:
                breaker.record(True)
                attempts.append(failed_attempt(endpoint, str(exc), exc.retryable))
                break
            headers = {"content-type": content_type, "user-agent": USER_AGENT,
                       **webhook_headers(delivery_id, body, target.signing_secret)}
            if authorization:
                headers["authorization"] = authorization
            attempt = await self._send(self.lanes.of(target.company_id, endpoint["url"]), endpoint, body, headers,
                                       bucket)
            ATTEMPT_OUTCOMES[attempt.outcome].inc()
            LATENCY.observe(attempt.duration_ms / 1000)
            attempts.append(attempt)
            breaker.record(attempt.outcome != "retryable")
            is_oauth = target.authentication.get("type") == "oauth2"
            if attempt.http_status == 401 and is_oauth and len(attempts) == 1:
                self.credentials.forget(target, authorization)  # refresh once, then try again
                continue
            break
        return attempts

    async def _send(self, lane: EndpointLane, endpoint: dict, body: bytes, headers: dict,
                    bucket: ThrottleBucket | None) -> Attempt:
        """Throttled requests go out the moment their bucket lets them, without waiting for a
        shared concurrency slot: the bucket bounds them anyway."""
        timeout = self.settings.request_timeout_seconds
        if bucket is not None:
            async with bucket.slot(), lane.slot():
                attempt = await post(self.http, endpoint, body, headers, timeout)
        else:
            async with lane.slot(), self.requests:  # the lane first: waiting for it holds no shared slot
                attempt = await post(self.http, endpoint, body, headers, timeout)
        lane.observe(attempt.duration_ms / 1000)  # the host's own time, not the wait for a slot
        return attempt

    async def _conclude(self, message: dict, endpoints: list[dict], attempts: list[Attempt],
                        held_until: list[float], done: set[str]) -> None:
        succeeded = done | {a.endpoint_id for a in attempts if a.succeeded}
        remaining = [e for e in endpoints if e["id"] not in succeeded]
        made = message["attempt"] + (1 if attempts else 0)
        if not remaining:
            await self._settle(message, attempts, "delivered", succeeded=succeeded, attempts_made=made)
            return
        last_failure = next((a for a in reversed(attempts) if not a.succeeded), None)
        error = last_failure.error if last_failure else "endpoint circuit breaker is open"
        permanent = last_failure is not None and all(
            a.outcome == "failed" for a in attempts if a.endpoint_id in {e["id"] for e in remaining}
        ) and not held_until
        if permanent:
            await self._settle(message, attempts, "failed", error=error, succeeded=succeeded, attempts_made=made)
            return
        if attempts:
            retry_after = max((a.retry_after for a in attempts if a.retry_after), default=None)
            delay = self.schedule.delay_after(made, retry_after)
            if delay is not None and held_until:
                delay = max(delay, max(held_until) - time.time())
        else:  # every endpoint left was held by its open breaker: no attempt was used up
            delay = max(held_until) - time.time()
        if delay is None:
            await self._settle(message, attempts, "failed", error=error, succeeded=succeeded, attempts_made=made)
            return
        next_at = datetime.now(UTC) + timedelta(seconds=max(delay, 0))
        await self._settle(message, attempts, "pending_retry", error=error, succeeded=succeeded,
                           attempts_made=made, next_attempt_at=next_at)

    async def _settle(self, message: dict, attempts: list[Attempt], status: str, error: str | None = None,
                      succeeded: set[str] | None = None, attempts_made: int | None = None,
                      next_attempt_at: datetime | None = None) -> None:
        now = datetime.now(UTC)
        DELIVERIES.labels(status).inc()
        await self.recorder.record(DeliveryState(
            delivery_id=message["delivery_id"],
            company_id=message["company_id"],
            event_id=message["event"]["id"],
            status=status,
            attempt_count=message["attempt"] if attempts_made is None else attempts_made,
            next_attempt_at=next_attempt_at,
            succeeded_endpoints=sorted(succeeded or message["succeeded_endpoints"]),
            last_error=error,
            last_attempt_at=attempts[-1].started_at if attempts else None,
            delivered_at=now if status == "delivered" else None,
        ), attempts)

    async def _park(self, message: dict, seconds: float) -> None:
        """Too much waiting ahead of this delivery (a throttle, a slow endpoint): keep it in the
        database, not in memory, and put it back on Kafka in `seconds`."""
        due = datetime.now(UTC) + timedelta(seconds=max(seconds, 1.0))
        status = "queued" if message["attempt"] == 0 else "pending_retry"
        await self._settle(message, [], status, next_attempt_at=due)

    async def _bucket(self, target: Target) -> ThrottleBucket | None:
        throttle = target.throttle
        if not throttle:
            self.buckets.pop(target.id, None)
            return None
        limits = (throttle["max_requests"], throttle["per_seconds"])
        bucket = self.buckets.get(target.id)
        if bucket is None or (bucket.max_requests, bucket.per_seconds) != limits:
            # A bucket new to this replica (start-up, a rebalance, a changed limit) first learns
            # what was sent in the last window, by whichever replica sent it.
            recent = await self.recorder.recent_sends(target.company_id, [e["url"] for e in target.endpoints],
                                                      limits[1], limits[0])
            bucket = self.buckets.get(target.id)  # another delivery may have built it meanwhile
            if bucket is None or (bucket.max_requests, bucket.per_seconds) != limits:
                bucket = self.buckets[target.id] = ThrottleBucket(*limits)
                bucket.remember(recent)
        return bucket

    def forget_idle_buckets(self) -> None:
        """After a rebalance another replica may have sent for these configurations meanwhile:
        idle buckets are rebuilt from the recorded attempts when next used."""
        for configuration_id in [k for k, b in self.buckets.items() if b.idle]:
            del self.buckets[configuration_id]


def _backlog_seconds(lane: EndpointLane) -> float:
    """How long a new delivery would wait in this lane, when that is too long to wait in memory;
    0 when it should simply join the lane. While the host's pace is only presumed, a parked
    delivery comes back in a second, when the first answers will have told it."""
    backlog = lane.backlog_seconds
    if backlog <= LANE_BACKLOG_SECONDS:
        return 0.0
    return backlog if lane.seconds_per_request is not None else 1.0
