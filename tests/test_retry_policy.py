"""The retry policy and the circuit breaker on their own (pure logic)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from services.dispatcher.breaker import CircuitBreaker
from services.dispatcher.retry import RetrySchedule, is_retryable_status, parse_retry_after
from shared.settings import DEFAULT_RETRY_SCHEDULE


def test_default_schedule_is_svix_like():
    assert DEFAULT_RETRY_SCHEDULE == [0, 5, 300, 1800, 7200, 18000, 36000, 36000]


def test_delays_follow_the_schedule_with_bounded_jitter():
    schedule = RetrySchedule([0, 5, 300], jitter=0.2)
    for _ in range(200):
        assert 4.0 <= schedule.delay_after(1) <= 6.0
        assert 240 <= schedule.delay_after(2) <= 360
    assert schedule.delay_after(3) is None, "three attempts are all there is"
    assert RetrySchedule([0, 5], jitter=0).delay_after(1) == 5


def test_retry_after_replaces_the_schedule_but_not_the_budget():
    schedule = RetrySchedule([0, 5, 300], jitter=0)
    assert schedule.delay_after(1, retry_after=42) == 42
    assert schedule.delay_after(3, retry_after=42) is None


@pytest.mark.parametrize(("status", "retryable"), [
    (500, True), (502, True), (503, True), (429, True), (408, True), (409, True), (425, True),
    (400, False), (401, False), (403, False), (404, False), (410, False), (422, False), (302, True),
])
def test_which_statuses_are_retried(status, retryable):
    assert is_retryable_status(status) is retryable


def test_retry_after_header_forms():
    assert parse_retry_after("120") == 120
    assert parse_retry_after("0") == 1, "never hammer: at least a second"
    assert parse_retry_after("99999999") == 24 * 3600
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= parse_retry_after(in_a_minute) <= 61
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_breaker_opens_probes_once_and_closes():
    breaker = CircuitBreaker(threshold=3, open_seconds=0.2)
    for _ in range(3):
        assert breaker.allows()
        breaker.record(False)
    assert breaker.state == "open" and not breaker.allows()
    time.sleep(0.25)
    assert breaker.allows(), "half-open: one probe"
    assert not breaker.allows(), "and only one at a time"
    breaker.record(False)
    assert breaker.state == "open"
    time.sleep(0.25)
    assert breaker.allows()
    breaker.record(True)
    assert breaker.state == "closed" and breaker.allows() and breaker.allows()
