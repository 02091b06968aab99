"""Which failures are retried, and when."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# 4xx answers mean "this request will never succeed" except these.
RETRYABLE_4XX = {408, 409, 425, 429}
MAX_RETRY_AFTER = 24 * 3600.0


def is_retryable_status(status: int) -> bool:
    return not (400 <= status < 500) or status in RETRYABLE_4XX


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 1.0), MAX_RETRY_AFTER)


class RetrySchedule:
    """`delays[k]` is the wait before attempt k+1; delays[0] is the first attempt (usually 0)."""

    def __init__(self, delays: list[float], jitter: float):
        self.delays = delays
        self.jitter = jitter

    @property
    def max_attempts(self) -> int:
        return len(self.delays)

    def delay_after(self, attempts_made: int, retry_after: float | None = None) -> float | None:
        """Seconds until the next attempt, or None when the attempts are used up."""
        if attempts_made >= self.max_attempts:
            return None
        if retry_after is not None:
            return retry_after
        base = self.delays[attempts_made]
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)
