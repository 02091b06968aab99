"""The dispatcher's steps for one delivery message, in `Dispatcher.deliver`:

1. `before_sending` (services/dispatcher/decision.py): the configuration and the endpoints still
   to do, or an outcome at once (configuration deleted or inactive, nothing left to send);
2. `_bucket_and_wait`: park the delivery in the database when too much waits ahead of it in
   its throttle bucket or endpoint lane, or when it came under the wrong key for its configuration;
3. `_send_to_all` -> `_send_to_endpoint` for each endpoint (circuit breaker, URL check,
   credentials, throttle, lane, HTTP);
4. `decide` (decision.py): delivered, retry later, or give up;
5. `_settle`: the recorder writes the state and the attempts, then the offset may move.

Messages are handled concurrently. Capacity is shared fairly: each company's endpoint host has
its own lane (services/dispatcher/lanes.py) holding at most an equal share of the shared slots
among the busy lanes, taken before a shared slot, so a slow endpoint uses its share and no more.
A throttled configuration waits in its own ThrottleBucket. When a bucket's backlog grows past
a couple of seconds' worth, or a lane's past half a minute's, the excess is parked in the
database with a due time instead of holding memory or the partition. A message that cannot be
handled is set aside (shared/deadletter.py), never lost silently, never retried forever."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from prometheus_client import Counter, Histogram

from services.dispatcher.auth import Credentials, TokenError
from services.dispatcher.breaker import Breakers
from services.dispatcher.configs import ConfigurationCache, DeliveryConfiguration
from services.dispatcher.decision import EndpointResult, GaveUp, Held, Outcome, RetryLater, before_sending, decide
from services.dispatcher.formats import render, webhook_headers
from services.dispatcher.health import Health
from services.dispatcher.lanes import EndpointLane, EndpointLanes
from services.dispatcher.offsets import OffsetTracker
from services.dispatcher.policy import Policy, explain
from services.dispatcher.recorder import DeliveryState, Recorder
from services.dispatcher.retry import RetrySchedule
from services.dispatcher.sender import Attempt, failed_attempt, post
from services.dispatcher.testing import send_test
from services.dispatcher.throttle import ThrottleBucket
from shared import tracing
from shared.deadletter import kafka_source, retry_while_unavailable, set_aside
from shared.messages import decode, valid_delivery
from shared.netguard import UrlRefused, check_url_syntax
from shared.operations import OPERATIONS_TOPIC
from shared.statuses import AttemptOutcome, DeliveryStatus

log = logging.getLogger(__name__)

ATTEMPTS = Counter("em_dispatcher_attempts_total", "HTTP attempts", ["outcome"])
ATTEMPT_OUTCOMES = {outcome: ATTEMPTS.labels(outcome) for outcome in AttemptOutcome}
DELIVERIES = Counter("em_dispatcher_deliveries_total", "Delivery states recorded (parked ones too)", ["status"])
# Each status's child, looked up once: `labels()` costs more than the increment (~8,000 instructions).
_DELIVERIES_BY_STATUS: dict[str, Counter] = {}
LATENCY = Histogram("em_dispatcher_request_seconds", "Endpoint response time")

MAX_IN_FLIGHT = 5000
# Of the shutdown drain budget (EM_DRAIN_SECONDS), the share in-flight deliveries get; the rest
# is the recorder's, to write what they concluded.
DELIVERIES_SHARE_OF_DRAIN = 0.8
THROTTLE_BACKLOG_SECONDS = 2.0
# A lane parks what arrives once its backlog would take this long to drain at the host's pace
# (a host that has not answered yet is presumed as slow as it has been silent). Long enough that
# a busy but healthy host is never parked (parking costs a database round trip per delivery),
# short enough that a slow host's backlog does not hold offsets and memory for minutes.
LANE_BACKLOG_SECONDS = 30.0
USER_AGENT = "EventManager/1.0 (+webhooks)"
# How long a delivery queued under the wrong key for its pinned configuration waits in the
# database before the poller queues it again (the least a park lasts).
REKEY_SECONDS = 1.0


class Dispatcher:
    def __init__(self, settings, configurations: ConfigurationCache, credentials: Credentials, recorder: Recorder,
                 http: aiohttp.ClientSession, breakers: Breakers, health: Health):
        self.settings = settings
        self.consumer: AIOKafkaConsumer | None = None  # set once subscribed (it needs our rebalance listener)
        self.configurations = configurations
        self.credentials = credentials
        self.recorder = recorder
        self.http = http
        self.breakers = breakers
        self.health = health
        self.schedule = RetrySchedule(settings.retry_schedule, settings.retry_jitter)
        self.offsets = OffsetTracker()
        self.buckets: dict[str, ThrottleBucket] = {}
        self.requests = asyncio.Semaphore(settings.dispatcher_concurrency)
        self.lanes = EndpointLanes(settings.dispatcher_concurrency, settings.endpoint_concurrency)
        self._tasks: set[asyncio.Task] = set()
        self._room_freed = asyncio.Event()  # set when a message in flight finishes

    # --- the consumer loop ----------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        last_commit = fetched_at = time.monotonic()
        while not stopping.is_set():
            room = MAX_IN_FLIGHT - len(self._tasks)
            if room > 0:
                batches = await self.consumer.getmany(timeout_ms=100, max_records=min(room, 1000))
                fetched_at = time.monotonic()
            else:  # read no more until something in flight finishes (still committing meanwhile)
                batches = {}
                self._room_freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room_freed.wait(), 0.5)
            for partition, records in batches.items():
                for record in records:
                    self.offsets.begin(partition, record.offset)
                    task = asyncio.create_task(self._handle(partition, record.offset, record.value, record.key,
                                                            fetched_at))
                    self._tasks.add(task)
                    task.add_done_callback(self._finished)
            if time.monotonic() - last_commit > 0.5:
                await self.commit()
                last_commit = time.monotonic()
        if self._tasks:  # leave the recorder part of the budget to write what these conclude
            await asyncio.wait(self._tasks, timeout=self.settings.drain_seconds * DELIVERIES_SHARE_OF_DRAIN)
        unfinished = list(self._tasks)
        for task in unfinished:  # their offsets stay uncommitted: the partition's next owner sends them
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        await self.commit()

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._room_freed.set()

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
                await dispatcher.offsets.wait_done(revoked, dispatcher.settings.revoke_drain_seconds)
                try:
                    await dispatcher.commit(revoked)
                except Exception as exc:
                    log.warning("commit on revoke failed: %s", exc)
                dispatcher.offsets.forget(revoked)

            async def on_partitions_assigned(self, assigned):
                dispatcher.forget_idle_buckets()

        return Listener()

    async def _handle(self, partition, offset: int, raw: bytes, key: bytes | None, fetched_at: float) -> None:
        message = None
        try:
            message = valid_delivery(decode(raw))
            await retry_while_unavailable("dispatcher", partial(self.deliver, message, fetched_at, key))
        except Exception as exc:
            # Not an outage (those are waited out above): this message itself cannot be handled.
            reason = f"delivery message at {partition.partition}/{offset} could not be handled: " \
                     f"{type(exc).__name__}: {exc}"
            try:
                await retry_while_unavailable("dispatcher", partial(
                    set_aside, self.recorder.pool, service="dispatcher", source=kafka_source(partition.topic),
                    reason=reason, payload=raw, key=key, company_id=message and message["company_id"]))
                if message is not None and not message.get("test"):  # the company sees it failed, not queued for ever
                    await self._settle(message, [], GaveUp(f"could not be delivered: {reason}"[:500]))
            except Exception:
                log.exception("could not set aside %s", reason)
        # Not in a `finally`: a delivery cancelled at shutdown is not done, and its offset must
        # not be committed past.
        self.offsets.done(partition, offset)

    # --- one delivery ---------------------------------------------------------------------

    async def deliver(self, message: dict, fetched_at: float, key: bytes | None = None) -> None:
        """`fetched_at`: when the message came from Kafka (`time.monotonic()`); `key`: its Kafka key."""
        if message.get("test"):  # a test event: sent once, recorded apart (services/dispatcher/testing.py)
            await send_test(self, message)
            return
        already_succeeded = set(message["succeeded_endpoints"])
        configuration, outcome, endpoints = await self._before_sending(message, already_succeeded, fetched_at)
        if outcome is not None:
            await self._settle(message, [], outcome)
            return
        bucket, wait = await self._bucket_and_wait(configuration, endpoints, key)
        if wait:
            await self._park(message, wait)
            return
        results = await self._send_to_all(configuration, endpoints, message, bucket)
        attempts = [a for result in results for a in result.attempts]
        attempts_made = message["attempt"] + (1 if attempts else 0)
        policy = configuration.policy
        schedule = (policy.schedule if policy else None) or self.schedule
        retry_on = policy.retry_on if policy else None
        outcome = decide(results, [e["id"] for e in endpoints], already_succeeded, attempts_made, schedule,
                         time.time(), retry_on)
        if policy is not None or outcome.status != DeliveryStatus.DELIVERED:
            self._explain(policy, attempts, schedule, attempts_made, outcome)
        succeeded = already_succeeded | {a.endpoint_id for a in attempts if a.succeeded}
        await self._settle(message, attempts, outcome, succeeded=succeeded, attempts_made=attempts_made)

    async def _before_sending(self, message: dict, already_succeeded: set[str], fetched_at: float) -> tuple[
            DeliveryConfiguration | None, Outcome | None, list[dict]]:
        """The configuration, the outcome when nothing is to be sent, and the endpoints to send to."""
        configuration_id = message["delivery_configuration_id"]
        configuration = await self.configurations.get(configuration_id)
        outcome, endpoints = before_sending(configuration, already_succeeded)
        if isinstance(outcome, GaveUp):
            # Decided on our copy, and giving up is final: a change committed before this message
            # was sent (an endpoint enabled, then its failed deliveries republished) may not have
            # reached us yet.
            configuration = await self.configurations.confirmed(configuration_id, since=fetched_at)
            outcome, endpoints = before_sending(configuration, already_succeeded)
        return configuration, outcome, endpoints

    def _explain(self, policy: Policy | None, attempts: list[Attempt], schedule: RetrySchedule, attempts_made: int,
                 outcome: Outcome) -> None:
        """What tracking shows of the effective policy: why a retry happened, when the next one comes.
        Not for a plain success under the operator's defaults (nothing to explain, nothing to store)."""
        timeout = (policy and policy.timeout_seconds) or self.settings.request_timeout_seconds
        method = policy.method if policy else "POST"
        retry_on = policy.retry_on if policy else None
        for attempt in attempts:
            attempt.policy = explain(attempt, timeout=timeout, method=method, schedule=schedule, retry_on=retry_on,
                                     attempt_number=attempts_made, outcome=outcome)

    async def _bucket_and_wait(self, configuration: DeliveryConfiguration, endpoints: list[dict],
                               key: bytes | None) -> tuple[ThrottleBucket | None, float]:
        """The configuration's throttle bucket, and seconds to park this delivery for (0: send it now)."""
        if configuration.pinned and key != configuration.id.encode():
            # Queued spread (shared/messages.py delivery_key) before the configuration was
            # pinned, so other replicas may be sending its like, each with its own throttle
            # bucket or refresh token. From the database the poller queues it under the
            # configuration's key, to the one replica that sends them all.
            return None, REKEY_SECONDS
        bucket = await self._bucket(configuration)
        return bucket, self._wait_ahead(configuration, endpoints, bucket)

    def _wait_ahead(self, configuration: DeliveryConfiguration, endpoints: list[dict],
                    bucket: ThrottleBucket | None) -> float:
        """Seconds to park this delivery for, or 0 to send it now."""
        if bucket is not None and bucket.waiting >= max(bucket.rate * THROTTLE_BACKLOG_SECONDS, 1):
            # Come back when the queue ahead is half drained, so the bucket never runs dry.
            return bucket.waiting / bucket.rate / 2
        backlog = max(_backlog_seconds(self.lanes.of(configuration.company_id, e["url"])) for e in endpoints)
        return backlog / 2

    async def _send_to_all(self, configuration: DeliveryConfiguration, endpoints: list[dict], message: dict,
                           bucket: ThrottleBucket | None) -> list[EndpointResult]:
        body, content_type = render(message["event"], configuration.format)
        send = partial(self._send_to_endpoint, configuration, body=body, content_type=content_type,
                       delivery_id=message["delivery_id"], bucket=bucket, trace_parent=message.get("traceparent"))
        if len(endpoints) == 1:  # the common case: no gather, no extra task
            return [await send(endpoints[0])]
        return list(await asyncio.gather(*(send(endpoint) for endpoint in endpoints)))

    async def _send_to_endpoint(self, configuration: DeliveryConfiguration, endpoint: dict, *, body: bytes,
                                content_type: str, delivery_id: str,
                                bucket: ThrottleBucket | None, trace_parent: str | None = None) -> EndpointResult:
        breaker = self.breakers.of(endpoint["id"])
        if not breaker.allows():
            return EndpointResult([], held_until=breaker.open_until)
        try:
            # Syntax and https only (cached, no DNS): the addresses are vetted on each connection.
            check_url_syntax(endpoint["url"], self.settings.require_https)
        except UrlRefused as exc:
            breaker.record(True)  # not the endpoint's fault; release a half-open probe
            return EndpointResult([failed_attempt(endpoint, f"endpoint URL refused: {exc}", retryable=False)])
        lane = self.lanes.of(configuration.company_id, endpoint["url"])
        attempts = []
        for _ in range(2):
            try:
                authorization = await self.credentials.authorization(configuration)
            except TokenError as exc:
                breaker.record(True)
                attempts.append(failed_attempt(endpoint, str(exc), exc.retryable))
                if not exc.retryable:
                    await self.health.token_refused(configuration.id, configuration.company_id, str(exc))
                break
            headers = self.request_headers(configuration, content_type, delivery_id, body, authorization)
            attempt = await self.send(lane, endpoint, body, headers, bucket, configuration, trace_parent)
            attempts.append(attempt)
            if attempt.http_status == 410:  # the receiver says this endpoint is gone for good
                await self._gone(configuration, endpoint)
            breaker.record(attempt.outcome != AttemptOutcome.RETRYABLE)
            is_oauth = configuration.authentication.get("type") == "oauth2"
            if attempt.http_status == 401 and is_oauth and len(attempts) == 1:
                self.credentials.forget(configuration, authorization)  # refresh once, then try again
                continue
            break
        return EndpointResult(attempts)

    @staticmethod
    def request_headers(configuration: DeliveryConfiguration, content_type: str, delivery_id: str, body: bytes,
                        authorization: str | None) -> dict:
        headers = {"content-type": content_type, "user-agent": USER_AGENT,
                   **webhook_headers(delivery_id, body, configuration.signer)}
        if configuration.headers:  # custom headers, an API key (never one of the above: the api refuses those)
            headers.update(configuration.headers)
        if authorization:
            headers["authorization"] = authorization
        return headers

    async def send(self, lane: EndpointLane, endpoint: dict, body: bytes, headers: dict,
                    bucket: ThrottleBucket | None, configuration: DeliveryConfiguration,
                    trace_parent: str | None = None) -> Attempt:
        """Throttled requests go out the moment their bucket lets them, without waiting for a
        shared concurrency slot: the bucket bounds them anyway. Each attempt carries a
        `traceparent` of the event's trace (`trace_parent`; a new trace without one) with a span
        id of its own, set last so a configuration's custom headers cannot replace it."""
        policy = configuration.policy
        timeout = (policy and policy.timeout_seconds) or self.settings.request_timeout_seconds
        method = policy.method if policy else "POST"
        tls = configuration.ssl or True
        if bucket is not None:
            async with bucket.slot(), lane.slot():
                with tracing.attempt(trace_parent, headers) as span:
                    attempt = await post(self.http, endpoint, body, headers, timeout, method, tls)
                    tracing.record(span, attempt.http_status, attempt.error)
        else:
            async with lane.slot(), self.requests:  # the lane first: waiting for it holds no shared slot
                with tracing.attempt(trace_parent, headers) as span:
                    attempt = await post(self.http, endpoint, body, headers, timeout, method, tls)
                    tracing.record(span, attempt.http_status, attempt.error)
        lane.observe(attempt.duration_ms / 1000)  # the host's own time, not the wait for a slot
        ATTEMPT_OUTCOMES[attempt.outcome].inc()
        LATENCY.observe(attempt.duration_ms / 1000)
        return attempt

    async def _settle(self, message: dict, attempts: list[Attempt], outcome: Outcome,
                      succeeded: set[str] | None = None, attempts_made: int | None = None) -> None:
        if isinstance(outcome, Held):
            await self._hold(message)
            return
        now = datetime.now(UTC)
        next_attempt_at = now + timedelta(seconds=outcome.after_seconds) if isinstance(outcome, RetryLater) else None
        await self._record(message, DeliveryState(
            delivery_id=message["delivery_id"],
            company_id=message["company_id"],
            delivery_configuration_id=message["delivery_configuration_id"],
            event_id=message["event"]["id"],
            status=outcome.status,
            attempt_count=message["attempt"] if attempts_made is None else attempts_made,
            next_attempt_at=next_attempt_at,
            succeeded_endpoints=sorted(succeeded or message["succeeded_endpoints"]),
            last_error=getattr(outcome, "error", None),
            last_attempt_at=attempts[-1].started_at if attempts else None,
            delivered_at=now if outcome.status == DeliveryStatus.DELIVERED else None,
        ), attempts)
        if isinstance(outcome, GaveUp) and outcome.exhausted and message["event"]["topic"] != OPERATIONS_TOPIC:
            # Never about an operational event's own delivery: a failing configuration must not
            # feed a loop of notices about notices.
            event = message["event"]
            await self.health.exhausted(message["delivery_configuration_id"], message["company_id"],
                                        delivery_id=message["delivery_id"],
                                        event={key: event[key] for key in ("id", "topic", "event_type", "subject")},
                                        attempts=attempts_made, last_error=outcome.error)

    async def _gone(self, configuration: DeliveryConfiguration, endpoint: dict) -> None:
        # Best effort: the request was sent, so a failure here must not make the delivery be
        # retried (and sent again); the endpoint's next 410 tries again.
        try:
            await self.health.disable(configuration.id, configuration.company_id, endpoint["id"], endpoint["url"],
                                      "the endpoint answered 410 Gone")
        except Exception as exc:
            log.warning("could not disable endpoint %s of %s after a 410: %s", endpoint["id"], configuration.id, exc)
        self.configurations.forget(configuration.id)

    async def _hold(self, message: dict) -> None:
        configuration_id = message["delivery_configuration_id"]
        if await self.recorder.hold(message["delivery_id"], configuration_id):
            _count_delivery(DeliveryStatus.HELD)
        else:
            self.configurations.forget(configuration_id)  # resumed meanwhile: our copy is out of date

    async def _park(self, message: dict, seconds: float) -> None:
        """Too much waiting ahead of this delivery (a throttle, a slow endpoint): keep it in the
        database, not in memory, and put it back on Kafka in `seconds`. Its status is unchanged."""
        status = DeliveryStatus.QUEUED if message["attempt"] == 0 else DeliveryStatus.PENDING_RETRY
        await self._record(message, DeliveryState(
            delivery_id=message["delivery_id"], company_id=message["company_id"],
            delivery_configuration_id=message["delivery_configuration_id"], event_id=message["event"]["id"],
            status=status, attempt_count=message["attempt"],
            next_attempt_at=datetime.now(UTC) + timedelta(seconds=max(seconds, 1.0)),
            succeeded_endpoints=sorted(message["succeeded_endpoints"]), last_error=None, last_attempt_at=None,
            delivered_at=None,
        ), [])

    async def _record(self, message: dict, state: DeliveryState, attempts: list[Attempt]) -> None:
        _count_delivery(state.status)
        await self.recorder.record(state, attempts)

    async def _bucket(self, configuration: DeliveryConfiguration) -> ThrottleBucket | None:
        throttle = configuration.throttle
        if not throttle:
            self.buckets.pop(configuration.id, None)
            return None
        limits = (throttle["max_requests"], throttle["per_seconds"])
        bucket = self.buckets.get(configuration.id)
        if bucket is None or (bucket.max_requests, bucket.per_seconds) != limits:
            # A bucket new to this replica (start-up, a rebalance, a changed limit) first learns
            # what was sent in the last window, by whichever replica sent it.
            urls = [e["url"] for e in configuration.endpoints]
            recent = await self.recorder.recent_sends(configuration.company_id, urls, limits[1], limits[0])
            bucket = self.buckets.get(configuration.id)  # another delivery may have built it meanwhile
            if bucket is None or (bucket.max_requests, bucket.per_seconds) != limits:
                bucket = self.buckets[configuration.id] = ThrottleBucket(*limits)
                bucket.remember(recent)
        return bucket

    def forget_idle_buckets(self) -> None:
        """After a rebalance another replica may have sent for these configurations meanwhile:
        idle buckets are rebuilt from the recorded attempts when next used."""
        for configuration_id in [k for k, b in self.buckets.items() if b.idle]:
            del self.buckets[configuration_id]


def _count_delivery(status: str) -> None:
    counter = _DELIVERIES_BY_STATUS.get(status)
    if counter is None:  # created on first use, as `labels()` would: /metrics shows the same series
        counter = _DELIVERIES_BY_STATUS[status] = DELIVERIES.labels(status)
    counter.inc()


def _backlog_seconds(lane: EndpointLane) -> float:
    """How long a new delivery would wait in this lane, when that is too long to wait in memory;
    0 when it should simply join the lane. While the host's pace is only presumed, a parked
    delivery comes back in a second, when the first answers will have told it."""
    backlog = lane.backlog_seconds
    if backlog <= LANE_BACKLOG_SECONDS:
        return 0.0
    return backlog if lane.seconds_per_request is not None else 1.0
