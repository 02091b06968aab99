"""A delivery configuration's own policy (services/api/schemas.py DeliveryPolicy), as the
dispatcher uses it: built once when the configuration is loaded. A configuration without one
has `policy = None` and costs nothing more per delivery; the operator's settings apply."""

from __future__ import annotations

from dataclasses import dataclass

from services.dispatcher.retry import RetrySchedule
from services.dispatcher.sender import Attempt


@dataclass(frozen=True, slots=True)
class Policy:
    timeout_seconds: float | None  # None: EM_REQUEST_TIMEOUT_SECONDS
    method: str
    schedule: RetrySchedule | None  # None: EM_RETRY_SCHEDULE
    retry_on: frozenset[str] | None  # None: every retryable failure

    @classmethod
    def of(cls, stored: dict | None, jitter: float) -> Policy | None:
        if not stored:
            return None
        delays = stored.get("retry_schedule")
        retry_on = stored.get("retry_on")
        return cls(timeout_seconds=stored.get("timeout_seconds"), method=stored.get("method") or "POST",
                   schedule=RetrySchedule([0.0, *delays], jitter) if delays is not None else None,
                   retry_on=frozenset(retry_on) if retry_on is not None else None)


def retry_class(attempt: Attempt) -> str | None:
    """What kind of failure an attempt was, in the terms of `retry_on`: "5xx", "429", "408",
    "409", "425", "timeout", "connection"; another status as itself ("404", "302"); None when it
    never reached the endpoint (a token or URL problem)."""
    status = attempt.http_status
    if status is None:
        return attempt.failure
    return "5xx" if status >= 500 else str(status)


def explain(attempt: Attempt, *, timeout: float, method: str, schedule: RetrySchedule,
            retry_on: frozenset[str] | None, attempt_number: int, outcome) -> dict:
    """The effective policy of one attempt and what followed it, for tracking: why (or why not)
    it is retried, and when."""
    record = {"timeout_seconds": timeout, "method": method, "attempt": attempt_number,
              "max_attempts": schedule.max_attempts,
              "retry_on": sorted(retry_on) if retry_on is not None else "default",
              "decision": str(outcome.status)}
    if attempt.succeeded:
        return record
    record["failure"] = retry_class(attempt)
    after = getattr(outcome, "after_seconds", None)
    if after is not None:
        record["next_delay_seconds"] = round(after, 3)
        record["retried_because"] = record["failure"]
    return record
