"""The dispatcher's decisions, without I/O: what becomes of a delivery before anything is sent,
and after its attempts (services/dispatcher/decision.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from services.dispatcher.decision import (
    BREAKER_OPEN,
    Delivered,
    EndpointResult,
    GaveUp,
    Held,
    RetryLater,
    before_sending,
    decide,
)
from services.dispatcher.retry import RetrySchedule
from services.dispatcher.sender import Attempt
from shared.statuses import AttemptOutcome, DeliveryStatus

NOW = 1_000_000.0
SCHEDULE = RetrySchedule([0, 5, 300], jitter=0)  # three attempts: now, +5 s, +300 s


def answered(endpoint_id: str, http_status: int | None, outcome: AttemptOutcome, retry_after=None) -> Attempt:
    error = None if outcome == AttemptOutcome.SUCCESS else f"HTTP {http_status}"
    return Attempt(endpoint_id, f"https://{endpoint_id}.example/hook", datetime.now(UTC), 12.0, http_status, error,
                   outcome, None, retry_after)


def ok(endpoint_id="a"):
    return EndpointResult([answered(endpoint_id, 200, AttemptOutcome.SUCCESS)])


def server_error(endpoint_id="a", retry_after=None):
    return EndpointResult([answered(endpoint_id, 503, AttemptOutcome.RETRYABLE, retry_after)])


def refused(endpoint_id="a"):
    return EndpointResult([answered(endpoint_id, 400, AttemptOutcome.FAILED)])


def held(until: float):
    return EndpointResult([], held_until=until)


@pytest.mark.parametrize(("name", "results", "endpoints", "already", "made", "expected"), [
    ("a 2xx delivers", [ok()], ["a"], set(), 1, Delivered()),
    ("a 5xx is retried after the schedule's next delay", [server_error()], ["a"], set(), 1,
     RetryLater("HTTP 503", 5.0)),
    ("the second failure waits the third delay", [server_error()], ["a"], set(), 2, RetryLater("HTTP 503", 300.0)),
    ("a 5xx on the last attempt gives up", [server_error()], ["a"], set(), 3, GaveUp("HTTP 503", exhausted=True)),
    ("a 4xx gives up at once", [refused()], ["a"], set(), 1, GaveUp("HTTP 400")),
    ("Retry-After replaces the schedule's delay", [server_error(retry_after=120.0)], ["a"], set(), 1,
     RetryLater("HTTP 503", 120.0)),
    ("Retry-After does not add attempts", [server_error(retry_after=120.0)], ["a"], set(), 3,
     GaveUp("HTTP 503", exhausted=True)),
    ("every breaker open: wait for it, no attempt used", [held(NOW + 30)], ["a"], set(), 3,
     RetryLater(BREAKER_OPEN, 30.0)),
    ("a breaker whose time has passed: retry now", [held(NOW - 1)], ["a"], set(), 0, RetryLater(BREAKER_OPEN, 0.0)),
    ("one success, one 5xx: retry (the success is kept)", [ok("a"), server_error("b")], ["a", "b"], set(), 1,
     RetryLater("HTTP 503", 5.0)),
    ("one success, one 4xx: give up on the rest", [ok("a"), refused("b")], ["a", "b"], set(), 1, GaveUp("HTTP 400")),
    ("a 4xx beside a 5xx: retry both", [refused("a"), server_error("b")], ["a", "b"], set(), 1,
     RetryLater("HTTP 503", 5.0)),
    ("a 4xx beside an open breaker: not given up", [refused("a"), held(NOW + 60)], ["a", "b"], set(), 1,
     RetryLater("HTTP 400", 60.0)),
    ("one success, one held: wait for the longer of schedule and breaker", [ok("a"), held(NOW + 60)], ["a", "b"],
     set(), 1, RetryLater(BREAKER_OPEN, 60.0)),
    ("the schedule's delay when longer than the breaker", [server_error("a"), held(NOW + 1)], ["a", "b"], set(), 1,
     RetryLater("HTTP 503", 5.0)),
    ("an earlier round's success counts", [ok("b")], ["b"], {"a"}, 2, Delivered()),
])
def test_decide(name, results, endpoints, already, made, expected):
    assert decide(results, endpoints, already, made, SCHEDULE, NOW) == expected


def timed_out(endpoint_id="a"):
    return EndpointResult([Attempt(endpoint_id, f"https://{endpoint_id}.example/hook", datetime.now(UTC), 2000.0,
                                   None, "timeout after 2s", AttemptOutcome.RETRYABLE, failure="timeout")])


def answered_with(status: int, endpoint_id="a"):
    return EndpointResult([answered(endpoint_id, status, AttemptOutcome.RETRYABLE)])


OWN_SCHEDULE = RetrySchedule([0, 2, 4, 8], jitter=0)  # a configuration's policy: four attempts


@pytest.mark.parametrize(("name", "results", "made", "retry_on", "expected"), [
    ("the configuration's schedule gives the delay", [server_error()], 1, None, RetryLater("HTTP 503", 2.0)),
    ("and its length the attempts", [server_error()], 3, None, RetryLater("HTTP 503", 8.0)),
    ("used up after its last attempt", [server_error()], 4, None, GaveUp("HTTP 503", exhausted=True)),
    ("a 5xx is retried when retry_on has 5xx", [server_error()], 1, frozenset({"5xx"}), RetryLater("HTTP 503", 2.0)),
    ("a 5xx fails at once when retry_on lacks it", [server_error()], 1, frozenset({"429"}), GaveUp("HTTP 503")),
    ("a 429 in retry_on", [answered_with(429)], 1, frozenset({"429"}), RetryLater("HTTP 429", 2.0)),
    ("a 409 not in retry_on", [answered_with(409)], 1, frozenset({"5xx", "429"}), GaveUp("HTTP 409")),
    ("a timeout in retry_on", [timed_out()], 1, frozenset({"timeout"}), RetryLater("timeout after 2s", 2.0)),
    ("a timeout not in retry_on", [timed_out()], 1, frozenset({"5xx"}), GaveUp("timeout after 2s")),
    ("a 3xx is not in any retry_on", [answered_with(302)], 1, frozenset({"5xx"}), GaveUp("HTTP 302")),
    ("retry_on narrows, never widens: a 4xx stays final", [refused()], 1, frozenset({"5xx"}), GaveUp("HTTP 400")),
    ("one endpoint still retryable keeps the delivery", [server_error("a"), timed_out("b")], 1, frozenset({"5xx"}),
     RetryLater("timeout after 2s", 2.0)),
])
def test_decide_with_a_policy(name, results, made, retry_on, expected):
    endpoints = sorted({a.endpoint_id for r in results for a in r.attempts})
    assert decide(results, endpoints, set(), made, OWN_SCHEDULE, NOW, retry_on) == expected


def test_outcomes_carry_their_delivery_status():
    assert Delivered().status == DeliveryStatus.DELIVERED
    assert GaveUp("x").status == DeliveryStatus.FAILED
    assert RetryLater("x", 1.0).status == DeliveryStatus.PENDING_RETRY
    assert Held().status == DeliveryStatus.HELD


@dataclass
class Configuration:
    active: bool = True
    paused: bool = False
    mode: str = "realtime"
    endpoints: list[dict] = field(default_factory=lambda: [{"id": "a", "active": True}, {"id": "b", "active": True}])


@pytest.mark.parametrize(("configuration", "already", "expected", "endpoint_ids"), [
    (None, set(), GaveUp("the delivery configuration was deleted"), []),
    (Configuration(active=False), set(), GaveUp("the delivery configuration is not active"), []),
    (Configuration(mode="scheduled"), set(), GaveUp("the delivery configuration is not active"), []),
    (Configuration(endpoints=[{"id": "a", "active": False}]), set(), GaveUp("no active endpoint"), []),
    (Configuration(paused=True), set(), Held(), []),
    (Configuration(paused=True, active=False), set(), GaveUp("the delivery configuration is not active"), []),
    (Configuration(), {"a", "b"}, Delivered(), []),
    (Configuration(), {"a"}, None, ["b"]),
    (Configuration(), set(), None, ["a", "b"]),
])
def test_before_sending(configuration, already, expected, endpoint_ids):
    outcome, endpoints = before_sending(configuration, already)
    assert outcome == expected
    assert [e["id"] for e in endpoints] == endpoint_ids
