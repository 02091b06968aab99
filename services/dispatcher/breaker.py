"""CircuitBreaker per endpoint: after `threshold` consecutive failures the endpoint is left
alone for `open_seconds`; then one probe is let through, which closes it on success or opens it
again on failure. Deliveries meanwhile wait in the database as `pending_retry`, and other
endpoints are not slowed."""

from __future__ import annotations

import time

from prometheus_client import Gauge

# This replica's breakers by state, counted at each scrape. A few open ones are endpoints' own
# trouble; most of them open at once points at our egress (DNS, proxy, NetworkPolicy).
BREAKERS = Gauge("em_dispatcher_breakers", "Endpoint circuit breakers this replica holds, by state", ["state"])
STATES = ("closed", "open", "half_open")


class CircuitBreaker:
    def __init__(self, threshold: int, open_seconds: float):
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.failures = 0
        self.open_until = 0.0
        self.probing = False

    def allows(self) -> bool:
        if self.failures < self.threshold:
            return True
        if time.time() >= self.open_until and not self.probing:
            self.probing = True  # half-open: exactly one probe at a time
            return True
        return False

    def record(self, success: bool) -> None:
        self.probing = False
        if success:
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.open_until = time.time() + self.open_seconds

    @property
    def state(self) -> str:
        if self.failures < self.threshold:
            return "closed"
        return "half_open" if time.time() >= self.open_until else "open"


class Breakers:
    def __init__(self, threshold: int, open_seconds: float):
        self.threshold = threshold
        self.open_seconds = open_seconds
        self._by_endpoint: dict[str, CircuitBreaker] = {}
        for state in STATES:
            BREAKERS.labels(state).set_function(lambda state=state: self.count(state))

    def count(self, state: str) -> int:
        return sum(1 for breaker in list(self._by_endpoint.values()) if breaker.state == state)

    def of(self, endpoint_id: str) -> CircuitBreaker:
        breaker = self._by_endpoint.get(endpoint_id)
        if breaker is None:
            breaker = self._by_endpoint[endpoint_id] = CircuitBreaker(self.threshold, self.open_seconds)
        return breaker
