"""What becomes of a delivery, decided without I/O: before sending (`before_sending`) and after
the attempts (`decide`). The worker does the I/O around these; tests/test_decision.py tables
every case."""

from __future__ import annotations

from dataclasses import dataclass

from services.dispatcher.policy import retry_class
from services.dispatcher.retry import RetrySchedule
from services.dispatcher.sender import Attempt
from shared.statuses import AttemptOutcome, DeliveryStatus

BREAKER_OPEN = "endpoint circuit breaker is open"


@dataclass(frozen=True, slots=True)
class Delivered:
    """Every endpoint has it."""

    status = DeliveryStatus.DELIVERED


@dataclass(frozen=True, slots=True)
class GaveUp:
    """Nothing more will be tried: a permanent refusal, or the retry schedule is used up."""

    error: str
    exhausted: bool = False  # the retry schedule is used up (not a refusal)
    status = DeliveryStatus.FAILED


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Try the endpoints left again in `after_seconds`."""

    error: str
    after_seconds: float
    status = DeliveryStatus.PENDING_RETRY


@dataclass(frozen=True, slots=True)
class Held:
    """The configuration is paused: keep the delivery until it is resumed."""

    status = DeliveryStatus.HELD


Outcome = Delivered | GaveUp | RetryLater | Held


@dataclass(slots=True)
class EndpointResult:
    """What happened at one endpoint: its attempts (two after a 401 with a refreshed OAuth
    token), or none because its open circuit breaker holds deliveries until `held_until`."""

    attempts: list[Attempt]
    held_until: float | None = None


def before_sending(configuration, already_succeeded: set[str]) -> tuple[Outcome | None, list[dict]]:
    """The outcome when nothing is to be sent (or None), and the endpoints to send to."""
    if configuration is None:
        return GaveUp("the delivery configuration was deleted"), []
    if not configuration.active or configuration.mode != "realtime":
        return GaveUp("the delivery configuration is not active"), []
    if configuration.paused:
        return Held(), []
    endpoints = [e for e in configuration.endpoints if e["active"] and e["id"] not in already_succeeded]
    if endpoints:
        return None, endpoints
    return (Delivered(), []) if already_succeeded else (GaveUp("no active endpoint"), [])


def decide(results: list[EndpointResult], endpoint_ids: list[str], already_succeeded: set[str],
           attempts_made: int, schedule: RetrySchedule, now: float,
           retry_on: frozenset[str] | None = None) -> Outcome:
    """After sending to `endpoint_ids`: delivered once every one succeeded; given up when every
    endpoint left failed for good, or the schedule has no attempt left; otherwise retried after
    the schedule's delay (or a longer Retry-After, or until a breaker lets requests through).
    `attempts_made` counts this round; a round in which every breaker was open counts for none.
    `schedule` and `retry_on` are the configuration's (its policy) or the operator's; with
    `retry_on`, a retryable failure of another class (policy.retry_class) is final."""
    attempts = [a for result in results for a in result.attempts]
    succeeded = already_succeeded | {a.endpoint_id for a in attempts if a.succeeded}
    remaining = set(endpoint_ids) - succeeded
    if not remaining:
        return Delivered()
    held_until = max((r.held_until for r in results if r.held_until is not None), default=None)
    error = _last_error(attempts)
    if not attempts:  # every endpoint left was held by its open breaker: no attempt was used up
        return RetryLater(error, max(held_until - now, 0.0))
    if held_until is None and _refused_for_good(attempts, remaining, retry_on):
        return GaveUp(error)
    delay = schedule.delay_after(attempts_made, _longest_retry_after(attempts))
    if delay is None:
        return GaveUp(error, exhausted=True)
    if held_until is not None:
        delay = max(delay, held_until - now)
    return RetryLater(error, max(delay, 0.0))


def _last_error(attempts: list[Attempt]) -> str:
    """The last failure's error; with none, the endpoints left were held by their breakers."""
    return next((a.error for a in reversed(attempts) if not a.succeeded), None) or BREAKER_OPEN


def _refused_for_good(attempts: list[Attempt], endpoint_ids: set[str], retry_on: frozenset[str] | None) -> bool:
    """Every attempt at these endpoints got an answer another try would get again (or one the
    configuration does not retry)."""
    return all(_final(a, retry_on) for a in attempts if a.endpoint_id in endpoint_ids)


def _final(attempt: Attempt, retry_on: frozenset[str] | None) -> bool:
    if attempt.outcome == AttemptOutcome.FAILED:
        return True
    if retry_on is None:
        return False
    failure = retry_class(attempt)
    return failure is not None and failure not in retry_on


def _longest_retry_after(attempts: list[Attempt]) -> float | None:
    return max((a.retry_after for a in attempts if a.retry_after), default=None)
